"""`random:hotword`: a SeACo-Paraformer whose hotword path provably decides what it writes.

With random weights the SeACo head never moves the argmax, so nothing could show that a hotword
given to the product reaches the model. This model is FunASR's own `SeacoParaformer` (the tiny
architecture, widened to 128 so the planted circuit fits) with random weights everywhere except
the parts listed below, which are set by hand. It decodes through the project's recognizer and
FunASR's `_seaco_decode_with_ASF` unchanged; only the weights differ.

What it does: without hotwords it writes the plain decoder's (meaningless) text, which never
holds a character of the upper half of the vocabulary. With hotwords, the first characters of
every piece it decodes (one per token position, up to SLOTS of them) are the winning hotword's
characters in order, and every later position is the plain decoder's own token. Among several
hotwords the winner is the one with the highest token ids, first character then second: a fixed
stand-in for "the hotword that best matches the audio", since this model hears nothing.

How the weights carry a hotword to the output, stage by stage:

1. Hotword ids -> `decoder.embed`: each token's row is its id in binary, one +-1 per bit.
2. `bias_encoder` (2-layer LSTM): layer 1 is a pointer machine. A "started" unit switches on at
   the first step; a one-hot pointer moves one unit per step; slot k's input gate opens only when
   the pointer says "step k" and its forget gate keeps it shut afterwards, so slot k holds the
   bits of character k. Layer 2 copies. The representation FunASR takes (the last step's state)
   therefore holds every character of the word, in order; the trailing <s> entry holds id 1.
3. `seaco_decoder`, layer 1: its FSMN memory turns a constant into the token position (the left
   half of the kernel counts the positions before it, which the zero padding at the start of the
   sequence cuts short), and its cross-attention over the hotword entries has a constant query
   and keys that read the first two slots as a number: the highest ids win (a gap of one id is a
   score gap of 20, so the loser's weight is below 1e-8). The values copy the winner's slots.
4. Layer 2's feed-forward gates slot k through at position k only (pairs of ReLUs with
   thresholds on the position), writing that character's bits; the last feed-forward copies
   them out. Layers 3-6 are zero: residual pass-throughs.
5. `hotword_output_layer`: a character's logit is its bits against the written bits (the right
   character scores about 37, one differing bit about 30); the "no bias" class has a constant 19.
   Where nothing is written (later positions, no hotword) "no bias" wins and FunASR's
   `_merge_res` keeps the plain decoder's distribution; elsewhere the SeACo distribution wins.

LayerNorms would make all of this depend on the audio, so: the encoder's and the plain decoder's
final norms are zero on the dims the circuit uses (the queries are zero there); large constant
"ballast" pairs dominate every norm's variance, so a norm is a common positive scale that no
ReLU threshold or argmax can feel; and every read subtracts a reference dim, so the norm's mean
cancels. The queries (audio) therefore reach the SeACo output only through float rounding.

Why a test on it proves the path: the plain decoder cannot write the hotword's characters, so
ignored hotwords fail; the written characters are decoded from the ids the model received, in
order, so a mangled list (other ids, reordered or dropped characters, words glued or split, the
winning word cut off) writes something else; two requests with different hotwords each see
their own word, so swapped hotwords fail; and every later token must equal the plain decoder's,
so a bias that leaks past the hotword fails too.

Limits of the plant, not of the product: characters past SLOTS are not written; two hotwords
sharing their first two characters tie and blend; a hotword character with the "no bias" id
(U+503E) or outside the vocabulary is written as a neighbour; 50 or more hotwords trigger
FunASR's ASF filter, whose scores this plant does not shape. The plant is built for fp32; int8's
dynamic activation scales break it.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from asr.models.random_weights.base import RandomBuild, write_model_dir
from asr.models.random_weights.seaco import SEACO, _cmvn_text, _instantiate, build_config, build_vocabulary

log = logging.getLogger(__name__)

HOTWORD_SPEC = "random:hotword"
GENERATOR_VERSION = 1  # bump when the planted weights or layout change

WIDTH = 128  # model width (encoder output, inner_dim, decoder attention)
SLOTS = 6  # characters of a hotword the plant writes
BITS = 10  # bits of a token id (the tiny vocabulary has 600 entries)
PLAIN_LIMIT = 300  # the plain decoder writes only token ids below this (U+4E00..U+4F28)

_SPECIALS = ("<blank>", "<s>", "</s>", "<unk>")
_OVERRIDES = {
    "encoder_conf": {"output_size": WIDTH},
    "model_conf": {"inner_dim": WIDTH},
    "predictor_conf": {"idim": WIDTH},
    # 4 gate units per (slot, bit) and one ballast unit must fit in the SeACo feed-forward.
    "seaco_decoder_conf": {"linear_units": 256},
}

# Gates: sigmoid(+-_GATE) is 1 or 0 to 2e-9; tanh(_ON) is 1 to 4e-9.
_GATE, _ON = 20.0, 10.0
_BALLAST = 1e4  # residual-stream ballast; every other value there stays below about 20
_HIDDEN_BALLAST = 1e4  # feed-forward hidden-layer ballast
_OUT_BALLAST = 8.0  # feed-forward output ballast (the next norm then divides by about 1)
_STEP = 10.0  # position gate slope: a gate is at least 4 away from flipping
_SCORE_GAP = 20.0  # attention score per id step of the hotword ranking


@dataclass(frozen=True)
class _Dims:
    """Where the circuit lives in the SeACo decoder's residual stream (the top of WIDTH)."""

    ref: int  # always equal to the stream's common offset: reads subtract it
    ballast_pos: int
    ballast_neg: int
    position: int  # 1 + min(t, 10) at token position t
    slots: int  # SLOTS x BITS: the winning hotword's characters
    code: int  # BITS: the character written at this position

    def slot(self, k: int, b: int) -> int:
        return self.slots + k * BITS + b

    @property
    def reserved(self) -> range:
        return range(self.ref, WIDTH)


def _dims() -> _Dims:
    ref = WIDTH - 4 - SLOTS * BITS - BITS
    return _Dims(ref=ref, ballast_pos=ref + 1, ballast_neg=ref + 2, position=ref + 3, slots=ref + 4,
                 code=ref + 4 + SLOTS * BITS)


_D = _dims()

# LSTM units (its own space): started, SLOTS pointers, SLOTS x BITS slot bits.
_STARTED = 0
_POINTER = 1
_SLOT = 1 + SLOTS


def _lstm_slot(k: int, b: int) -> int:
    return _SLOT + k * BITS + b


def _bits(token_id: int) -> list[float]:
    return [1.0 if token_id >> b & 1 else -1.0 for b in range(BITS)]


def build_hotword_config() -> dict:
    config = build_config("tiny")
    for section, values in _OVERRIDES.items():
        config[section].update(values)
    return config


def plant(model: torch.nn.Module, vocab: list[str], no_bias: int) -> None:
    """Set the weights described in the module docstring on an instantiated SeacoParaformer."""
    if len(vocab) > 2**BITS:
        raise ValueError(f"{len(vocab)} tokens do not fit in {BITS} bits")
    with torch.no_grad():
        _plain_model(model, vocab)
        slot_value = _bias_encoder(model)
        _seaco_decoder(model, slot_value)
        _output_layer(model, vocab, no_bias)


def _plain_model(model: torch.nn.Module, vocab: list[str]) -> None:
    """The queries are zero on the circuit's dims; the plain decoder never writes the upper half
    of the vocabulary nor a special token (so its text is one character per token)."""
    for norm in (model.encoder.after_norm, model.decoder.after_norm):
        norm.weight[_D.reserved.start:] = 0.0
        norm.bias[_D.reserved.start:] = 0.0
    bias = model.decoder.output_layer.bias
    bias[PLAIN_LIMIT:] -= 1e3
    for token in _SPECIALS:
        bias[vocab.index(token)] -= 1e3


def _bias_encoder(model: torch.nn.Module) -> float:
    """Embedding rows are ids in binary; the LSTM stores character k in slot k. Returns the
    value a set bit has in the LSTM's output."""
    embed = model.decoder.embed[0].weight
    embed.zero_()
    for token_id in range(embed.shape[0]):
        embed[token_id, :BITS] = torch.tensor(_bits(token_id))

    lstm = model.bias_encoder
    hidden = lstm.hidden_size
    for param in lstm.parameters():
        param.zero_()
    i, f, g, o = (slice(n * hidden, (n + 1) * hidden) for n in range(4))

    def gates(layer: int):
        return (getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}"),
                getattr(lstm, f"bias_ih_l{layer}"))

    w_ih, w_hh, bias = gates(0)
    on = math.tanh(1.0)  # a set unit's output: tanh(c) with c = 1

    def always_on(unit: int) -> None:
        bias[i.start + unit], bias[f.start + unit] = _GATE, -_GATE
        bias[g.start + unit], bias[o.start + unit] = _ON, _GATE

    def open_at_step(row: int, k: int) -> None:
        """Gate row `row` opens at step k+1 only (read from the previous step's pointers)."""
        if k == 0:  # before anything started
            bias[row] = _GATE
            w_hh[row, _STARTED] = -2 * _GATE / on
        else:
            bias[row] = -_GATE
            w_hh[row, _POINTER + k - 1] = 2 * _GATE / on

    always_on(_STARTED)
    for k in range(SLOTS):
        unit = _POINTER + k
        open_at_step(i.start + unit, k)
        bias[f.start + unit], bias[g.start + unit], bias[o.start + unit] = -_GATE, _ON, _GATE
        for b in range(BITS):
            unit = _lstm_slot(k, b)
            open_at_step(i.start + unit, k)
            w_hh[f.start + unit], bias[f.start + unit] = -w_hh[i.start + unit], -bias[i.start + unit]
            w_ih[g.start + unit, b] = 1.0
            bias[o.start + unit] = _GATE

    w_ih, _, bias = gates(1)
    for unit in range(_SLOT + SLOTS * BITS):
        bias[i.start + unit], bias[f.start + unit], bias[o.start + unit] = _GATE, -_GATE, _GATE
        w_ih[g.start + unit, unit] = 1.0
    return math.tanh(math.tanh(math.tanh(math.tanh(1.0))))


def _seaco_decoder(model: torch.nn.Module, slot_value: float) -> None:
    decoder = model.seaco_decoder
    for param in decoder.parameters():
        param.zero_()
    layers = list(decoder.decoders)
    if len(layers) < 2 or decoder.decoders2 is not None:
        raise ValueError("the plant needs a SeACo decoder of attention layers only, at least two")
    ballast_scale = _BALLAST * math.sqrt(2.0 / WIDTH)  # a norm's std over the stream: its ballast
    centre = (decoder.decoders[0].self_attn.kernel_size - 1) // 2

    # Layer 1: position from the FSMN; the winning hotword's slots from the cross-attention.
    first = layers[0]
    first.norm2.bias[_D.position] = 1.0
    first.norm2.bias[_D.ballast_pos], first.norm2.bias[_D.ballast_neg] = _BALLAST, -_BALLAST
    first.self_attn.fsmn_block.weight[_D.position, 0, :centre] = 1.0
    attention = first.src_attn
    d_k, heads = attention.d_k, attention.h
    keys, values = attention.linear_k_v.weight[:WIDTH], attention.linear_k_v.weight[WIDTH:]
    for head in range(heads):
        attention.linear_q.bias[head * d_k] = math.sqrt(d_k) * _SCORE_GAP / (2 * slot_value)
        for b in range(BITS):  # score = id of the first character x 2^BITS + id of the second
            keys[head * d_k, _lstm_slot(0, b)] = 2.0 ** (b + BITS)
            keys[head * d_k, _lstm_slot(1, b)] = 2.0 ** b
    for index in range(SLOTS * BITS):
        values[index, _SLOT + index] = 1.0
        attention.linear_out.weight[_D.slots + index, index] = 1.0 / slot_value  # a bit is +-1

    # Layer 2: slot k through at position k only.
    second = layers[1]
    reads = [_D.ref, _D.ballast_pos, _D.position, *range(_D.slots, _D.slots + SLOTS * BITS)]
    second.norm1.weight[reads] = 1.0
    ff = second.feed_forward
    ballast_unit = 4 * SLOTS * BITS
    if ff.w_1.out_features <= ballast_unit:
        raise ValueError("the SeACo feed-forward is too narrow for the plant")

    ff_w1 = ff.w_1.weight

    def read(unit: int, weights: dict[int, float]) -> None:
        """Unit `unit` reads sum(w x dim) minus the reference, scaled back from the norm."""
        for dim, weight in weights.items():
            ff_w1[unit, dim] += weight * ballast_scale
        ff_w1[unit, _D.ref] -= sum(weights.values()) * ballast_scale

    gain = _HIDDEN_BALLAST * math.sqrt(1.0 / ff.w_1.out_features) / 2  # net 2 bits -> about 1
    for k in range(SLOTS):
        for b in range(BITS):
            for s, sign in enumerate((1.0, -1.0)):
                for e in range(2):  # fires from position k + e on
                    unit = ((k * BITS + b) * 2 + s) * 2 + e
                    read(unit, {_D.slot(k, b): sign, _D.position: _STEP,
                                _D.ballast_pos: _STEP * (0.5 - (k + 1) - e) / _BALLAST})
                    ff.w_2.weight[_D.code + b, unit] = gain * sign * (1.0 if e == 0 else -1.0)
    read(ballast_unit, {_D.ballast_pos: _HIDDEN_BALLAST / _BALLAST})
    ff.norm.weight[:ballast_unit] = 1.0
    ff.norm.bias[ballast_unit] = 1.0
    ff.w_2.weight[_D.ballast_pos, ballast_unit] = _OUT_BALLAST
    ff.w_2.weight[_D.ballast_neg, ballast_unit] = -_OUT_BALLAST
    codes = [_D.ref, *range(_D.code, _D.code + BITS)]
    second.norm2.weight[codes] = 1.0
    second.self_attn.fsmn_block.weight[codes, 0, centre] = 9.0  # x 10 with FSMN's own skip

    # The last feed-forward (no residual around it) copies the written bits out.
    last = decoder.decoders3[0]
    last.norm1.weight[codes] = 1.0
    ff = last.feed_forward
    ballast_unit = 2 * BITS
    gain = _HIDDEN_BALLAST * math.sqrt(1.0 / ff.w_1.out_features) / 10  # about 10 in -> about 1
    for b in range(BITS):
        for s, sign in enumerate((1.0, -1.0)):
            ff.w_1.weight[2 * b + s, _D.code + b] = sign * ballast_scale
            ff.w_1.weight[2 * b + s, _D.ref] = -sign * ballast_scale
            ff.w_2.weight[_D.code + b, 2 * b + s] = sign * gain
    ff.w_1.bias[ballast_unit] = _HIDDEN_BALLAST
    ff.norm.weight[:ballast_unit] = 1.0
    ff.norm.bias[ballast_unit] = 1.0
    ff.w_2.weight[_D.ballast_pos, ballast_unit] = _OUT_BALLAST
    ff.w_2.weight[_D.ballast_neg, ballast_unit] = -_OUT_BALLAST
    decoder.after_norm.weight[codes] = 1.0


def _output_layer(model: torch.nn.Module, vocab: list[str], no_bias: int) -> None:
    """A character's logit is its bits against the written bits; "no bias" is a constant."""
    layer = model.hotword_output_layer
    layer.weight.zero_()
    layer.bias.zero_()
    gain = 2.0  # the two SeACo passes add up: about 38 for the right character
    for token_id, token in enumerate(vocab):
        if token in _SPECIALS:
            layer.bias[token_id] = -1e4
        elif token_id != no_bias:
            bits = torch.tensor(_bits(token_id))
            layer.weight[token_id, _D.code:_D.code + BITS] = gain * bits
            layer.weight[token_id, _D.ref] = -gain * float(bits.sum())
    layer.bias[no_bias] = 19.0


def remembered_ids(representation: torch.Tensor) -> list[list[int]]:
    """The token ids the bias encoder holds for each hotword entry: FunASR's
    `_hotword_representation` output [entries, WIDTH] read back slot by slot (for tests and
    for anyone debugging the plant)."""
    words = []
    for row in representation.float().cpu():
        ids = []
        for k in range(SLOTS):
            bits = row[_lstm_slot(k, 0):_lstm_slot(k, 0) + BITS]
            if float(bits.abs().max()) < 0.1:  # an empty slot: the word ended
                break
            ids.append(sum(1 << b for b in range(BITS) if bits[b] > 0))
        words.append(ids)
    return words


def _configuration_json() -> dict:
    return {
        "framework": "pytorch",
        "task": "auto-speech-recognition",
        "model": {"type": "funasr"},
        "pipeline": {"type": "funasr-pipeline"},
        "file_path_metas": {
            "init_param": "model.pt",
            "config": "config.yaml",
            "tokenizer_conf": {"token_list": "tokens.json", "seg_dict": "seg_dict"},
            "frontend_conf": {"cmvn_file": "am.mvn"},
        },
        "generated_by": f"seaco-webui planted hotword model v{GENERATOR_VERSION}",
    }


def generate(target: Path, seed: int = 0) -> Path:
    """Write the planted model directory at `target` (atomically), in ModelScope's layout."""
    config = build_hotword_config()
    vocab = build_vocabulary("tiny")
    no_bias = config["model_conf"]["NO_BIAS"]
    model = _instantiate(config, len(vocab), seed)
    plant(model, vocab, no_bias)
    dim = config["frontend_conf"]["n_mels"] * config["frontend_conf"]["lfr_m"]
    write_model_dir(target, model.state_dict(), config, texts={
        "tokens.json": json.dumps(vocab, ensure_ascii=False),
        "seg_dict": "".join(f"{t} {t}\n" for t in vocab if not t.startswith("<")),
        "am.mvn": _cmvn_text(dim, torch.Generator().manual_seed(seed)),
    }, configuration=_configuration_json())
    log.info("generated %s model at %s", HOTWORD_SPEC, target)
    return target


HOTWORD = RandomBuild(label="model", folder="random", sizes=("hotword",), version=GENERATOR_VERSION,
                      files=SEACO.files, generate=lambda size, target: generate(target))


def ensure_hotword_model(spec: str, cache_dir: Path) -> Path:
    """The directory for `random:hotword`, generated once into `cache_dir` (the models cache)."""
    if spec != HOTWORD_SPEC:
        raise ValueError(f"model '{spec}' is not {HOTWORD_SPEC}")
    return HOTWORD.ensure(spec, cache_dir)
