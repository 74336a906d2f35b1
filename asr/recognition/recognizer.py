"""One padded batch of features through FunASR's own SeACo-Paraformer stages.

The stages are FunASR's (encode -> CIF predictor -> SeACo decoder); what this module adds is
keeping batch padding out of the results. FunASR's `calc_predictor` hands the CIF predictor the
encoder output at padded frames (its tail step and its kernel-3 convolution both read the first
padded frame), so a file's tokens depend on its batch mates. Running the predictor per file on
the unpadded slice of the batched encoder output removes that leak (the experiment and its
counts are in docs/design.md); the encoder and decoder already mask padding. What remains is
float noise in the last bits where a kernel blocks its sums differently for a different number
of rows, which flipped no token in any test.

On a CPU a batch need not be padded at all: padding costs as much as speech there. With
`lanes > 1` a CPU batch runs its files side by side instead, each alone on its share of the
threads, so nothing of a batch mate can reach a file: no padded frames, no shared int8 activation
scale. Only the thread count differs from a lone run, which can move the last bits of some sums.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, fields

import torch
from torch.nn.utils.rnn import pad_sequence

from asr.models.funasr import import_funasr
from asr.recognition.attention import attention_mode, fused_attention_enabled, use_fused_attention
from asr.recognition.precision import REDUCED, autocast, full_precision, keep_fp32_outputs
from asr.system.threads import set_thread_count

# FunASR prints banners on stdout when first imported; import_funasr keeps them out of --json.
import_funasr()
from funasr.models.bicif_paraformer.cif_predictor import cif  # noqa: E402
from funasr.models.transformer.utils.nets_utils import make_pad_mask  # noqa: E402


@dataclass
class DecodedWord:
    """One word of a piece: a Chinese character, or a Latin word merged from its subword tokens."""

    text: str
    logprob: float  # sum of its tokens' log-probabilities
    tokens: int
    start_s: float | None = None  # from the piece's start; None without timestamps
    end_s: float | None = None


@dataclass
class Decoded:
    token_ids: list[int]
    text: str
    confidence: float  # geometric mean of the chosen tokens' probabilities, 0-1
    words: list[DecodedWord] = field(default_factory=list)
    timing_note: str | None = None  # set when the timestamp head's output could not be used as is


@dataclass
class BatchTimings:
    encoder_s: float = 0.0
    predictor_s: float = 0.0
    decoder_s: float = 0.0
    timestamp_s: float = 0.0
    postprocess_s: float = 0.0

    @property
    def total_s(self) -> float:
        return sum(getattr(self, f.name) for f in fields(self))

    def add_scaled(self, other: BatchTimings, scale: float) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name) * scale)


class SimulatedOutOfMemory(torch.OutOfMemoryError):
    """torch's own OOM type, raised by the CPU-testable memory budget (simulate_oom_frames)."""


# FunASR's `_seaco_decode_with_ASF(nfilter=50)`: with more hotword entries than this (the list
# plus its trailing <s>), its attention-score filter keeps the best 50, chosen from batch row 0.
ASF_FILTER = 50


class Recognizer:
    """Runs batches; stateless between calls apart from the model itself.

    Not re-entrant: the engine calls it under its model lock. `threads` is the CPU thread budget
    of one call; `lanes` how many files of a CPU batch may run side by side (1: padded batches).
    """

    def __init__(self, model: torch.nn.Module, tokenizer, frontend, device: torch.device,
                 precision: str = "fp32", simulate_oom_frames: int = 0, threads: int = 1, lanes: int = 1,
                 attention: str = "auto"):
        self.tokenizer = tokenizer
        self.frontend = frontend
        self.device = device
        self.set_precision(precision, model)
        self.simulate_oom_frames = simulate_oom_frames
        self.threads = max(1, threads)
        self.lanes = max(1, min(lanes, self.threads)) if device.type == "cpu" else 1
        self._lane_pool: ThreadPoolExecutor | None = None
        self._special = {model.blank_id, model.sos, model.eos}
        self.masks_skipped = skip_full_attention_masks(model.encoder)
        # Fused attention (memory linear in length) on CUDA and under bf16/fp16; an fp32 call on a
        # CPU keeps FunASR's bit-exact path. Decided per call, so engines share one model.
        use_fused_attention(model.encoder, only_reduced=True)
        self.attention = attention  # auto: fused on CUDA and under bf16/fp16; fused / funasr: always
        self.fused_layers = sum(map(fused_attention_enabled, model.encoder.modules()))

    def set_precision(self, precision: str, model: torch.nn.Module) -> None:
        """Compute in `precision` with `model` (the int8 copy for int8) from the next call on.
        The engine checked the device can run it and calls this between batches."""
        self.model = model
        self.precision = precision
        self.reduced = precision in REDUCED
        if self.reduced:
            keep_fp32_outputs(model)

    def hotword_list(self, words: list[str]) -> list[list[int]] | None:
        """Token ids per hotword plus FunASR's trailing <s> entry, via FunASR's own splitter."""
        if not words:
            return None
        # The leading space keeps FunASR's URL branch (a string starting with "http") closed for
        # a first word such as "httpd"; its word branch strips the space again.
        return self.model.generate_hotwords_list(
            " " + " ".join(words), tokenizer=self.tokenizer, frontend=self.frontend
        )

    def _autocast(self):
        return autocast(self.precision, self.device)

    def _fp32(self):
        """Autocast off for the steps that integrate or compare scores: CIF's running sum of
        weights decides where a token fires, and the timestamp head's peaks decide times."""
        return full_precision(self.device) if self.reduced else contextlib.nullcontext()

    def _check_budget(self, feats: list[torch.Tensor]) -> None:
        padded = len(feats) * max(f.shape[0] for f in feats)
        if self.simulate_oom_frames and padded > self.simulate_oom_frames:
            raise SimulatedOutOfMemory(
                f"CUDA out of memory (simulated): batch of {len(feats)} x {padded // len(feats)} "
                f"frames exceeds the budget of {self.simulate_oom_frames} padded frames"
            )

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def recognize(self, feats: list[torch.Tensor], hotwords: list[list[int]] | None,
                  timings: BatchTimings | None = None, timestamps: bool = False) -> list[Decoded]:
        """Features of one batch (any lengths) -> one Decoded per file, in the same order.

        `timestamps` also runs the CIF predictor's timestamp head (FunASR's upsampling CNN and
        BLSTM) and gives each word its start and end; off, it costs nothing.
        """
        timings = timings or BatchTimings()
        self._check_budget(feats)
        lanes = min(self.lanes, len(feats))
        if lanes > 1:
            return self._side_by_side(feats, hotwords, timings, lanes, timestamps)
        if self.device.type == "cpu":
            set_thread_count(self.threads)  # this thread's count; see _side_by_side
        if hotwords is not None and len(hotwords) > ASF_FILTER and len(feats) > 1:
            # Past FunASR's filter size its SeACo decoder keeps the hotwords that best match batch
            # row 0 for every row, so a file's bias would depend on its batch mates: each file
            # decodes alone and gets the hotwords that best match its own audio.
            return [self._padded([f], hotwords, timings, timestamps)[0] for f in feats]
        return self._padded(feats, hotwords, timings, timestamps)

    def _side_by_side(self, feats: list[torch.Tensor], hotwords: list[list[int]] | None,
                      timings: BatchTimings, lanes: int, timestamps: bool) -> list[Decoded]:
        """Each file alone, `lanes` at a time, longest first so the lanes finish together.

        torch's thread count is per calling thread (OpenMP and MKL both keep it thread-locally),
        so each lane sets its own share; the caller's count is set again afterwards because torch
        also keeps the last value set as the default for threads it has not seen yet.
        A failure stops the lanes from taking more files and is re-raised once all have stopped,
        so the engine's one-by-one retry sees a quiet model.
        """
        if self._lane_pool is None:
            self._lane_pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="asr-lane")
        # Every thread gets used: 3 threads over 2 lanes are 2 + 1.
        lane_threads = [self.threads // lanes + (n < self.threads % lanes) for n in range(lanes)]
        todo = iter(sorted(range(len(feats)), key=lambda i: -feats[i].shape[0]))
        todo_lock = threading.Lock()
        failed = threading.Event()
        decoded: list[Decoded | None] = [None] * len(feats)
        lane_timings = [BatchTimings() for _ in range(lanes)]

        def lane(number: int) -> None:
            set_thread_count(lane_threads[number])
            while not failed.is_set():
                with todo_lock:
                    index = next(todo, None)
                if index is None:
                    return
                try:
                    decoded[index] = self._padded([feats[index]], hotwords, lane_timings[number],
                                                  timestamps)[0]
                except BaseException:
                    failed.set()
                    raise

        started = time.perf_counter()
        try:
            futures = [self._lane_pool.submit(lane, n) for n in range(lanes)]
            wait(futures)
            for future in futures:
                future.result()  # the first lane's failure, if any
        finally:
            set_thread_count(self.threads)
        # Stage times overlap across lanes: share the batch's wall time out in their proportions.
        busy = sum(t.total_s for t in lane_timings)
        scale = (time.perf_counter() - started) / busy if busy else 0.0
        for lane_timing in lane_timings:
            timings.add_scaled(lane_timing, scale)
        assert all(d is not None for d in decoded), "every lane ended without an error"
        return decoded  # type: ignore[return-value]

    def _padded(self, feats: list[torch.Tensor], hotwords: list[list[int]] | None,
                timings: BatchTimings, timestamps: bool = False) -> list[Decoded]:
        clock = _Clock(self._sync)
        upsampled: list[tuple[torch.Tensor, torch.Tensor]] | None = [] if timestamps else None
        log_probs, token_lens = self.log_probs(feats, hotwords, timings, clock, upsampled)
        if log_probs is None:
            return [Decoded([], "", 0.0) for _ in feats]
        with torch.inference_mode():
            best_scores, best_ids = log_probs.float().max(dim=-1)
            best_scores, best_ids = best_scores.cpu(), best_ids.cpu()
        results = [self._finish(best_ids[i, : token_lens[i]], best_scores[i, : token_lens[i]],
                                upsampled[i] if upsampled else None)
                   for i in range(len(feats))]
        timings.postprocess_s += clock.lap()
        return results

    def log_probs(self, feats: list[torch.Tensor], hotwords: list[list[int]] | None,
                  timings: BatchTimings | None = None, clock: _Clock | None = None,
                  upsampled: list | None = None):
        """One padded batch -> (log-probs [batch, tokens, vocab], tokens per file), or (None, counts)
        when no file has a token. The raw numbers, so tests can compare them bit for bit.

        Given a list as `upsampled`, it also gets each file's timestamp-head output (upsampled
        alphas and peaks, on the CPU), computed on that file's own unpadded slice: the head's
        BLSTM reads every frame it is given, so in a padded batch a file's times would depend on
        its batch mates."""
        timings = timings or BatchTimings()
        clock = clock or _Clock(self._sync)
        model = self.model
        with torch.inference_mode(), self._autocast(), attention_mode(self.attention):
            lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.int32)
            speech = pad_sequence(feats, batch_first=True).to(self.device, non_blocking=True)
            encoder_out, encoder_lens = model.encode(speech, lengths.to(self.device))
            timings.encoder_s += clock.lap()

            if self.reduced:
                encoder_out = encoder_out.float()
            embeds, token_counts = [], []
            with self._fp32():
                for row in range(len(feats)):
                    length = int(encoder_lens[row])
                    acoustic, count, *_ = self.predict(
                        encoder_out[row : row + 1, :length], encoder_lens[row : row + 1]
                    )
                    embeds.append(acoustic[0])
                    token_counts.append(count[0])
                token_lens = torch.stack(token_counts).round().long()
                timings.predictor_s += clock.lap()
                if upsampled is not None:
                    for row in range(len(feats)):
                        length = int(encoder_lens[row])
                        upsampled.append(self._timestamp_head_or_error(
                            encoder_out[row : row + 1, :length], token_lens[row : row + 1]))
                    timings.timestamp_s += clock.lap()

            if int(token_lens.max()) < 1:
                return None, token_lens
            acoustic_embeds = pad_sequence(embeds, batch_first=True)
            log_probs = model._seaco_decode_with_ASF(
                encoder_out, encoder_lens, acoustic_embeds, token_lens, hw_list=hotwords
            )
            timings.decoder_s += clock.lap()
        return log_probs, token_lens

    def predict(self, encoder_out: torch.Tensor, encoder_lens: torch.Tensor):
        """FunASR's CifPredictorV3 forward without its timestamp head.

        `calc_predictor` always runs the timestamp branch too (an upsampling CNN and a BLSTM over
        three times the frames), whose output it then discards; it costs about 85% of the
        predictor's time. This runs the same FunASR modules in the same order for the token
        branch only; a test checks the outputs are bit-identical to `calc_predictor`.
        """
        predictor = self.model.predictor
        if not _is_cif_v3(predictor):
            return self.model.calc_predictor(encoder_out, encoder_lens)
        mask = ~make_pad_mask(encoder_lens, maxlen=encoder_out.size(1))[:, None, :].to(encoder_out.device)
        hidden = torch.relu(predictor.cif_conv1d(predictor.pad(encoder_out.transpose(1, 2))))
        alphas = torch.sigmoid(predictor.cif_output(hidden.transpose(1, 2)))
        alphas = torch.nn.functional.relu(alphas * predictor.smooth_factor - predictor.noise_threshold)
        frame_mask = mask.transpose(-1, -2).float()
        alphas = (alphas * frame_mask).squeeze(-1)
        tail_hidden, alphas, token_num = predictor.tail_process_fn(
            encoder_out, alphas, None, mask=frame_mask.squeeze(-1)
        )
        acoustic_embeds, peaks = cif(tail_hidden, alphas, predictor.threshold)
        acoustic_embeds = acoustic_embeds[:, : int(token_num.max())]
        return acoustic_embeds, token_num, alphas, peaks

    def timestamp_head(self, encoder_out: torch.Tensor, token_num: torch.Tensor):
        """FunASR's timestamp branch (`get_upsample_timestamp`) for one unpadded file:
        (upsampled alphas, upsampled peaks) as 1-D CPU tensors, three per encoder frame."""
        mask = torch.ones(1, 1, encoder_out.size(1), dtype=torch.bool, device=encoder_out.device)
        _, _, alphas, peaks = self.model.predictor.get_upsample_timestamp(
            encoder_out, mask, token_num.to(encoder_out.dtype))
        return alphas[0].float().cpu(), peaks[0].float().cpu()

    def _timestamp_head_or_error(self, encoder_out: torch.Tensor, token_num: torch.Tensor):
        """The timestamp head's output, or the error text: times are an extra, and a failure
        there must cost the file its times only, never its text."""
        try:
            return self.timestamp_head(encoder_out, token_num)
        except Exception as exc:  # noqa: BLE001 - reported on the file as a warning
            if "out of memory" in str(exc).lower() or isinstance(exc, torch.OutOfMemoryError):
                raise  # the engine's back-off handles memory, for the whole batch
            return f"timestamps failed ({type(exc).__name__}: {exc})"

    def _finish(self, ids: torch.Tensor, scores: torch.Tensor, upsampled=None) -> Decoded:
        # deliberate lazy import: FunASR's submodules load after import_funasr() silenced its banners
        from funasr.utils.postprocess_utils import sentence_postprocess

        keep = [i for i, token in enumerate(ids.tolist()) if token not in self._special]
        token_ids = [int(ids[i]) for i in keep]
        if not token_ids:
            return Decoded([], "", 0.0)
        tokens = self.tokenizer.ids2tokens(token_ids)
        text = sentence_postprocess(tokens)[0]
        token_scores = scores[keep].tolist()
        confidence = math.exp(sum(token_scores) / len(token_scores))
        if isinstance(upsampled, str):
            times, note = None, upsampled + "; the text is kept without times"
        elif upsampled is not None:
            times, note = token_times(tokens, upsampled)
        else:
            times, note = None, None
        return Decoded(token_ids, text, round(min(1.0, confidence), 4),
                       words=group_words(tokens, token_scores, times), timing_note=note)


_TIME_PER_UPSAMPLED_FRAME_S = 0.060 / 3  # a 60 ms LFR frame is three upsampled frames


def token_times(tokens: list[str], upsampled) -> tuple[list[tuple[float, float]], str | None]:
    """(start, end) in seconds of each token, from the timestamp head, through FunASR's own
    `ts_prediction_lfr6_standard`; and a note when its output could not be used as is.

    FunASR's function can return a different number of times than tokens (its renormalised
    firing may miss a peak: the length mismatches of FunASR #1410 and #1795). Times must line up
    with tokens one for one, so then the piece's span is shared out evenly and the note says so.
    """
    # deliberate lazy import: FunASR's submodules load after import_funasr() silenced its banners
    from funasr.utils.timestamp_tools import ts_prediction_lfr6_standard

    alphas, peaks = upsampled
    span_s = len(alphas) * _TIME_PER_UPSAMPLED_FRAME_S
    _, stamps = ts_prediction_lfr6_standard(alphas.clone(), peaks.clone(), list(tokens))
    if len(stamps) == len(tokens):
        return [(start / 1000, end / 1000) for start, end in stamps], None
    step = span_s / max(1, len(tokens))
    return ([(i * step, (i + 1) * step) for i in range(len(tokens))],
            f"the timestamp head gave {len(stamps)} times for {len(tokens)} tokens; times were "
            "spread evenly over the segment")


def group_words(tokens: list[str], scores: list[float],
                times: list[tuple[float, float]] | None) -> list[DecodedWord]:
    """Tokens -> words: a Chinese character is a word; Latin subwords ending in "@@" join the
    next token. `<unk>` is dropped as FunASR's own text drops it (its time goes with it)."""
    words: list[DecodedWord] = []
    pending: DecodedWord | None = None
    for index, token in enumerate(tokens):
        if token in ("<unk>", "<OOV>", "<s>", "</s>"):
            continue
        start, end = times[index] if times is not None else (None, None)
        piece = token[:-2] if token.endswith("@@") else token
        if pending is None:
            pending = DecodedWord(piece, scores[index], 1, start, end)
        else:
            pending.text += piece
            pending.logprob += scores[index]
            pending.tokens += 1
            pending.end_s = end
        if not token.endswith("@@"):
            words.append(pending)
            pending = None
    if pending is not None:
        words.append(pending)
    return words


def skip_full_attention_masks(encoder: torch.nn.Module) -> int:
    """Let the encoder's SANM attention skip masking when the mask hides nothing.

    A file alone (the usual CPU case) has no padding, yet FunASR still fills the scores with the
    all-false mask, re-masks the softmax and multiplies the FSMN input and output by ones: about
    8% of the encoder's time on a 60 s input. With nothing masked those steps change no value,
    so results stay bit-identical (a test compares them). Returns how many layers were patched.
    """
    # deliberate lazy import: FunASR's submodules load after import_funasr() silenced its banners
    from funasr.models.sanm.attention import MultiHeadedAttentionSANM

    patched = 0
    for module in encoder.modules():
        if type(module) is not MultiHeadedAttentionSANM or "forward_attention" in vars(module):
            continue
        # Bound to the module itself (not a closure over its bound method), so a deep copy, such
        # as int8's quantised copy, calls its own layers.
        module.forward_attention = types.MethodType(
            _unmasked_when_full(MultiHeadedAttentionSANM.forward_attention, mask_index=2), module)
        module.forward_fsmn = types.MethodType(
            _unmasked_when_full(MultiHeadedAttentionSANM.forward_fsmn, mask_index=1), module)
        patched += 1
    return patched


def _unmasked_when_full(function, mask_index: int):
    """`function(self, *args)` with its mask argument (args[mask_index]) dropped when it hides
    nothing."""
    def call(self, *args, **kwargs):
        extra = [v for v in (*args[mask_index + 1:], *kwargs.values()) if v is not None]
        mask = args[mask_index] if len(args) > mask_index else None
        if mask is not None and not extra and bool(mask.all()):
            args = (*args[:mask_index], None, *args[mask_index + 1:])
        return function(self, *args, **kwargs)

    return call


def _is_cif_v3(predictor: torch.nn.Module) -> bool:
    return (type(predictor).__name__ == "CifPredictorV3" and predictor.tail_threshold > 0.0
            and not predictor.training)


class _Clock:
    def __init__(self, sync):
        self._now = time.perf_counter
        self._sync = sync
        self._last = self._now()

    def lap(self) -> float:
        self._sync()
        now = self._now()
        elapsed, self._last = now - self._last, now
        return elapsed
