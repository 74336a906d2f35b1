"""Punctuation with FunASR's CT-Transformer, one mark per ASR word by construction.

The engine punctuates the words of a whole file (all VAD segments joined, since a sentence can
span segments) and then cuts subtitle sentences at sentence marks using the words' times. FunASR's
own pipeline re-tokenises the recognised text for the punctuation model (`split_words`), and its
tokens need not match the ASR words and their timestamps one to one: the punctuation array and the
timestamp list then disagree in length (FunASR issues #1410 and #1795). Here the model is fed our
word list itself, one token id per word, so it returns exactly one mark per word and the two can
never drift apart.

The network is FunASR's (`CTTransformer.punc_forward`), and so is the windowing of its
`inference`: windows of `split_size` new words, the unfinished tail after the last 。/？ carried
into the next window, a forced cut at the last comma once a carried window passes 200 words, and
a sentence end on the last word. Only the tokenisation differs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from asr.models import ModelLoadError
from asr.models.loader import ModelKind, build_funasr_model, resolve_device
from asr.models.random_weights.punctuation import PUNCTUATION

log = logging.getLogger(__name__)

DEFAULT_PUNC_MODEL = "iic/punc_ct-transformer_zh-cn-common-vocab272727-pytorch"
PUNCTUATION_MODEL = ModelKind(
    label="punctuation model", class_names=("CTTransformer",), random_build=PUNCTUATION,
    advice=("Set --punctuation (or `punctuation:` in config.yaml) to a local model directory, to off, "
            "or to random:tiny for a random-weight model that exercises the code path."))

SPLIT_SIZE = 20  # new words per window, FunASR's default `split_size`
CACHE_POP_LIMIT = 200  # FunASR's `cache_pop_trigger_limit`: past this a window is cut at a comma
SENTENCE_END_MARKS = ("。", "？")  # what FunASR's windowing treats as the end of a sentence
NO_MARK_CLASSES = ("_", "<unk>")  # classes that write nothing


@dataclass
class Punctuator:
    """A loaded CT-Transformer. `punctuate` is thread-safe: calls are serialised by a lock."""

    spec: str
    directory: Path
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    parameters: int = 0
    load_s: float = 0.0
    split_size: int = SPLIT_SIZE
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        punc_list = [str(p) for p in self.model.punc_list]
        self.marks: list[str] = ["" if p in NO_MARK_CLASSES else p for p in punc_list]
        self._sentence_end_ids = frozenset(i for i, p in enumerate(punc_list) if p in SENTENCE_END_MARKS)
        self._comma_id = punc_list.index("，") if "，" in punc_list else None
        self._sentence_end_id = int(self.model.sentence_end_id)
        self._token2id: dict[str, int] = self.tokenizer.token2id
        self._unk_id = int(self.tokenizer.unk_id)

    def token_ids(self, words: Sequence[str]) -> list[int]:
        """One vocabulary id per word. FunASR's CharTokenizer looks tokens up as they are; ASR
        output may capitalise English words, so a miss is retried in lower case before <unk>."""
        ids = []
        for word in words:
            word = word.strip()
            token = self._token2id.get(word)
            if token is None:
                token = self._token2id.get(word.lower(), self._unk_id)
            ids.append(token)
        return ids

    def punctuate(self, words: Sequence[str]) -> list[str]:
        """The mark to write after each word ("" for none), one per word; the last is 。 or ？."""
        marks = [self.marks[c] for c in self.punctuation_classes(words)]
        assert len(marks) == len(words), (len(marks), len(words))
        return marks

    def punctuation_classes(self, words: Sequence[str]) -> list[int]:
        """The model's class per word (indices into its `punc_list`; FunASR's `punc_array`)."""
        if not words:
            return []
        # deliberate lazy import: FunASR loads with the punctuation model, not with this module
        from funasr.models.ct_transformer.utils import split_to_mini_sentence

        ids = self.token_ids(words)
        windows = split_to_mini_sentence(ids, self.split_size)
        classes: list[int] = []
        carried: list[int] = []
        with self._lock, torch.inference_mode():
            for index, window in enumerate(windows):
                window = carried + window
                predicted = self._classify(window)
                if index < len(windows) - 1:
                    cut = self._sentence_cut(predicted, len(window))
                    carried = window[cut + 1:]
                    predicted = predicted[:cut + 1]
                classes.extend(predicted)
        if classes[-1] not in self._sentence_end_ids:
            classes[-1] = self._sentence_end_id  # as FunASR: a text ends with a sentence end
        assert len(classes) == len(words), (len(classes), len(words))
        return classes

    def _classify(self, ids: list[int]) -> list[int]:
        text = torch.tensor([ids], dtype=torch.long, device=self.device)
        lengths = torch.tensor([len(ids)], dtype=torch.int32, device=self.device)
        logits, _ = self.model.punc_forward(text=text, text_lengths=lengths)
        return logits[0].argmax(dim=-1).tolist()

    def _sentence_cut(self, predicted: list[int], window_length: int) -> int:
        """Index of the last word to keep from a window that is not the text's last (-1: keep
        none, carry it all). Mirrors FunASR's search: the last 。/？ before the window's final
        word and after its first two; failing that, in a window past 200 words, the last comma,
        which then becomes a sentence end (`predicted` is updated in place)."""
        last_comma = -1
        for i in range(len(predicted) - 2, 1, -1):
            if predicted[i] in self._sentence_end_ids:
                return i
            if last_comma < 0 and predicted[i] == self._comma_id:
                last_comma = i
        if window_length > CACHE_POP_LIMIT and last_comma >= 0:
            predicted[last_comma] = self._sentence_end_id
            return last_comma
        return -1


def load_punctuator(spec: str, device: str | torch.device, cache_dir: Path) -> Punctuator | None:
    """Load the punctuation model `spec`: "off" (None), a ModelScope id, a local directory or
    `random:tiny|large`. `cache_dir` is the project's cache (random models go to its models/)."""
    if spec.strip().lower() == "off":
        return None
    started = time.perf_counter()
    target = resolve_device(device)
    built = build_funasr_model(spec, PUNCTUATION_MODEL, target, cache_dir)
    model, kwargs, directory = built.model, built.kwargs, built.directory
    tokenizer = kwargs.get("tokenizer")
    if not hasattr(tokenizer, "token2id"):
        raise ModelLoadError(f"the punctuation model in {directory} has no token list (tokens.json)")
    parameters = sum(p.numel() for p in model.parameters())
    punctuator = Punctuator(
        spec=spec, directory=directory, model=model, tokenizer=tokenizer, device=target,
        parameters=parameters, load_s=time.perf_counter() - started,
    )
    log.info("punctuation model ready: %.1f M parameters, %s, %.1f s",
             parameters / 1e6, target, punctuator.load_s)
    return punctuator
