"""Inverse text normalisation (ITN) of Chinese transcripts: numbers, dates and amounts as people
write them ("二零二四年三月五日下午三点十五分" -> "2024年3月5日下午3:15").

The grammar is wetext's (the compiled WeTextProcessing FSTs, run by kaldifst, no pynini). Only
its tagger decides *where* a number is; this module renders every span itself, because wetext's
own verbaliser writes dates as 2024/03/05, money as ¥1200, units as kg/min/°, time-of-day as
p.m., ranges and approximate numbers with "~", and returns an empty string for some inputs
("三千万美元", "晚上十点半"). The tagger keeps each span's spoken text in its fields, so each
span can be checked against the input and, when anything looks wrong, left as it was spoken.

Rules that matter to a reader and are not the grammar's:
- single digits stay Chinese unless part of a larger expression (三个人, 第一次, 一心一意);
- adjacent-digit and 几 approximations stay Chinese (三五个, 十几个, 二三十岁), as GB/T 15835 asks;
- ranges keep the spoken connector (二十到三十岁 -> 20到30岁);
- a bare 十 outside a time (十拿九稳), the adverb 十分, and names and set phrases that hold a
  number (三十六计, 十字路口, 十月革命) stay as spoken.

Safety: a text is cut at punctuation and spaces and each piece is normalised on its own; a piece
is kept as spoken when the tagged spans do not add back up to it, when a span renders empty, or
when a rendered span loses a character that is not part of how a number is said. A grammar that
cannot be loaded, or any error, returns the raw text with a warning for the caller to surface; a
transcript is never lost to ITN.

Thread safety: the grammar loads once, lazily, under a lock. kaldifst's `TextNormalizer` wraps a
read-only `ConstFst` and its call holds the GIL, so one loaded grammar serves every thread.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_CACHE_SIZE = 4096  # normalised pieces kept: a file's text repeats its segments' pieces

# Where a text is cut into independent pieces: sentence and clause marks, and spaces (which
# Paraformer puts only around Latin words).
_PIECE_SEPARATOR = re.compile(r"([\s，。！？；：、,!?;:…]+)")

_DIGIT = {"零": 0, "〇": 0, "一": 1, "幺": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
          "七": 7, "八": 8, "九": 9}
_SMALL_UNIT = {"十": 10, "百": 100, "千": 1000}
_NUMERAL_CHARS = "".join(_DIGIT) + "十百千万亿点负正"
_LEADING_NUMERAL = re.compile(f"^[{_NUMERAL_CHARS}]+")
_RENDERED_NUMBER = re.compile(r"^-?\d[\d.]*(?:万亿|万|亿)?")
_WRITTEN_CARDINAL = re.compile(r"-?\d+(?:\.\d+)?(?:(?:万亿|万|亿)\d*(?:\.\d+)?)*")  # 1200, 3.14, 1亿2000万

# Characters a number's spoken form may lose when written (三点十五分 -> 3:15, 百分之五 -> 5%,
# 三加五等于八 -> 3+5=8). Any other character of a span must survive its rendering.
_NUMBER_WORDS = set(_NUMERAL_CHARS + "分之秒刻半整时角毛比加减乘除以等于到至")

_NOON = "上午|下午|早上|早晨|晚上|中午|凌晨|傍晚|夜里|半夜|深夜|清晨"
# A time of day said as a single-digit hour, which the grammar leaves alone: 下午三点 -> 下午3点.
# 一点 also means "a little" (晚上一点也不冷), so it counts as an hour only before a clock word.
_NOON_HOUR = re.compile(f"({_NOON})(?:(一)点(?=[钟半多整前后左]|$)"
                        f"|([二两三四五六七八九十]{{1,3}})点(?![点心缀子儿]))")

# Names and set phrases that hold a number the grammar would convert; they stay as spoken.
PROTECTED_PHRASES = (
    "十万火急", "十万八千里", "八九不离十", "十有八九", "十拿九稳", "十室九空", "十指连心",
    "十字路口", "十字架", "红十字", "十年寒窗", "十面埋伏", "十八罗汉", "十八般武艺", "十八层地狱",
    "三十六计", "三十六行", "七十二行", "七十二变", "二十四史", "二十四节气", "二十四孝", "十二生肖",
    "三十而立", "四十不惑", "五十而知天命", "五十步笑百步", "一千零一夜", "九九八十一",
    "三七二十一", "十月革命", "十三妹", "十三行", "十三陵", "十万个为什么",
)

# Field order the grammar's verbaliser expects for the span types rendered through it.
_VERBALIZER_ORDER = {"fraction": ("sign", "numerator", "denominator")}


class GrammarUnavailable(RuntimeError):
    """The ITN grammar could not be found or loaded."""


@dataclass(frozen=True)
class Normalized:
    """One text after ITN. `text` equals `raw` when nothing was converted or ITN failed; a failure
    leaves a `warning` meant for the user."""

    text: str
    raw: str
    warning: str | None = None

    @property
    def changed(self) -> bool:
        return self.text != self.raw


@dataclass
class _Token:
    name: str
    fields: list[tuple[str, str]] = field(default_factory=list)

    @property
    def raw(self) -> str:
        """The spoken text the span covers (the tagger keeps it in the fields, in input order)."""
        return "".join(value for key, value in self.fields if key != "preserve_order")

    def get(self, key: str) -> str | None:
        return next((value for k, value in self.fields if k == key), None)


def grammar_dir() -> Path:
    """wetext's Chinese ITN graphs, found without importing wetext (whose import loads every
    language's graphs, about 0.8 s and 40 MB, where this needs two files)."""
    spec = importlib.util.find_spec("wetext")
    if spec is None or not spec.submodule_search_locations:
        raise GrammarUnavailable("the wetext package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "fsts" / "zh" / "itn"


class ChineseITN:
    """A lazily loaded ITN grammar. Make one per grammar; `default_itn()` is shared."""

    def __init__(self, directory: Path | None = None, tagger: str = "tagger.fst",
                 verbalizer: str = "verbalizer.fst"):
        self._directory = directory
        self._names = (tagger, verbalizer)
        self._lock = threading.Lock()
        self._graphs = None
        self._error: str | None = None
        self.loads = 0  # how many times the graphs were read (once, however many threads ask)
        self._piece = functools.lru_cache(maxsize=_CACHE_SIZE)(self._normalize_piece)

    def clear_cache(self) -> None:
        """Forget the pieces already normalised (a benchmark times the work, not the cache)."""
        self._piece.cache_clear()

    # -- loading ---------------------------------------------------------------------------------
    def _load(self):
        if self._graphs is not None:
            return self._graphs
        with self._lock:
            if self._graphs is None and self._error is None:
                try:
                    import kaldifst  # deliberate lazy import: the grammars load on first use

                    folder = self._directory or grammar_dir()
                    paths = [folder / name for name in self._names]
                    missing = [str(p) for p in paths if not p.is_file()]
                    if missing:
                        raise GrammarUnavailable(f"missing {', '.join(missing)}")
                    self.loads += 1
                    self._graphs = tuple(kaldifst.TextNormalizer(str(p)) for p in paths)
                    log.info("ITN grammar loaded from %s", folder)
                except Exception as exc:  # noqa: BLE001 - reported with every text, never raised
                    self._error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1]}"
                    log.warning("inverse text normalisation unavailable (%s); texts stay as spoken",
                                self._error)
        if self._graphs is None:
            raise GrammarUnavailable(self._error or "not loaded")
        return self._graphs

    def load(self) -> str | None:
        """Load now (e.g. at engine start); returns the error message, or None when ready."""
        try:
            self._load()
        except GrammarUnavailable as exc:
            return str(exc)
        return None

    # -- public ----------------------------------------------------------------------------------
    def normalize(self, text: str) -> Normalized:
        if not text or not any("\u4e00" <= c <= "\u9fff" for c in text):
            return Normalized(text, text)
        try:
            parts = _PIECE_SEPARATOR.split(text)
            out = "".join(part if i % 2 else self._piece(part) for i, part in enumerate(parts))
        except Exception as exc:  # noqa: BLE001 - the transcript stands as spoken
            message = f"numbers left as spoken: inverse text normalisation failed ({_describe(exc)})"
            if not isinstance(exc, GrammarUnavailable):
                log.warning("ITN failed on %r: %s", text[:80], _describe(exc))
            return Normalized(text, text, message)
        return Normalized(out if out.strip() else text, text)

    def normalize_many(self, texts: Sequence[str]) -> list[Normalized]:
        return [self.normalize(t) for t in texts]

    # -- one piece -------------------------------------------------------------------------------
    def _normalize_piece(self, piece: str) -> str:
        if not piece or not any("\u4e00" <= c <= "\u9fff" for c in piece):
            return piece
        tagger, verbalizer = self._load()
        tokens = _parse(tagger(piece))
        if "".join(t.raw for t in tokens) != piece:
            log.debug("ITN kept %r as spoken: its tagged spans do not add up to it", piece)
            return piece
        protected = _protected_positions(piece)
        out: list[str] = []
        start = 0
        for token in tokens:
            raw = token.raw
            end = start + len(raw)
            before = piece[start - 1] if start > 0 else ""
            after = piece[end] if end < len(piece) else ""
            if token.name in ("char", "whitelist") or protected.intersection(range(start, end)):
                rendered = raw
            else:
                rendered = self._render(token, before, after, verbalizer)
                if rendered is None or not _keeps_meaning(raw, rendered):
                    rendered = raw
            out.append(rendered)
            start = end
        return _NOON_HOUR.sub(_noon_hour, "".join(out))

    def _render(self, token: _Token, before: str, after: str, verbalizer) -> str | None:
        raw = token.raw
        if "几" in (before, after):  # 十几个, 几十个: approximate, written in characters
            return None
        if token.name == "date":
            return _render_date(token)
        if token.name == "time":
            return _render_time(token)
        if token.name == "money":
            return self._render_money(token, verbalizer)
        if token.name == "cardinal":
            if raw == "十" and after != "点":  # 十拿九稳, 十有八九, 第十: a bare ten stays
                return None
            return _plain_number(raw, _verbalize(verbalizer, "cardinal", [("value", raw)]))
        if token.name == "measure":  # a quantity, or a rate: 每小时 + 一百二十公里
            parts = [self._render_measure(value, verbalizer) if key in ("value", "numerator") else value
                     for key, value in token.fields]
            return None if None in parts else "".join(parts)
        fields = token.fields
        order = _VERBALIZER_ORDER.get(token.name)
        if order:
            fields = sorted(fields, key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
        rendered = _verbalize(verbalizer, token.name, fields)
        return rendered if rendered and "~" not in rendered else None

    def _render_money(self, token: _Token, verbalizer) -> str | None:
        value, currency = token.get("value") or "", token.get("currency") or ""
        if token.fields[0][0] != "value":  # written as spoken: the number first, then the currency
            return None
        number = _plain_number(value, _verbalize(verbalizer, "cardinal", [("value", value)]))
        if number is None or not currency:
            return None
        decimal = token.get("decimal") or ""
        if decimal:
            cents = _jiao_fen(decimal)
            if cents is None or not number.isdigit():
                return None
            number += "." + (f"{cents:02d}".rstrip("0") or "0")
        return number + currency

    def _render_measure(self, raw: str, verbalizer) -> str | None:
        if raw == "十分":  # the adverb (十分感谢) far more often than a score of ten
            return None
        if raw.endswith("刻"):  # 三点一刻: a time, which the grammar reads as 3.1刻
            return _clock(raw[:-2].removesuffix("点"), raw[-2:], None) if "点" in raw else None
        connector = next((c for c in ("到", "至") if c in raw), None)
        if connector:
            left, right = raw.split(connector, 1)
            if not left or not right:
                return None
            return self._normalize_piece(left) + connector + self._normalize_piece(right)
        rendered = _verbalize(verbalizer, "measure", [("value", raw)])
        if not rendered or "~" in rendered:  # 三五个, 二三十岁: approximate, written in characters
            return None
        if raw.startswith("百分之"):
            return rendered if rendered.endswith("%") else None
        number = _RENDERED_NUMBER.match(rendered)
        leading = _LEADING_NUMERAL.match(raw)
        if number is None or leading is None:
            return None
        unit = raw[leading.end():]
        rest = rendered[number.end():]
        written = _myriads(leading.group(), number.group())
        if any("\u4e00" <= c <= "\u9fff" for c in rest) and rest != unit:
            return rendered  # mixed: 三块五 -> 3块5
        return written + unit  # the unit as spoken: kg, min, ° -> 公斤, 分钟, 度


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, GrammarUnavailable) else str(exc)


def _parse(tagged: str) -> list[_Token]:
    """Read the tagger's `name { key: "value" ... } ...` (values escape \\ and ")."""
    tokens: list[_Token] = []
    i, n = 0, len(tagged)
    while i < n:
        while i < n and tagged[i] == " ":
            i += 1
        if i >= n:
            break
        brace = tagged.index("{", i)
        token = _Token(tagged[i:brace].strip())
        i = brace + 1
        while True:
            while tagged[i] == " ":
                i += 1
            if tagged[i] == "}":
                i += 1
                break
            colon = tagged.index(":", i)
            key = tagged[i:colon].strip()
            i = tagged.index('"', colon) + 1
            value = []
            while tagged[i] != '"':
                if tagged[i] == "\\":
                    i += 1
                value.append(tagged[i])
                i += 1
            i += 1
            token.fields.append((key, "".join(value)))
        tokens.append(token)
    return tokens


def _serialize(name: str, fields: Sequence[tuple[str, str]]) -> str:
    body = " ".join(f'{k}: "{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                    for k, v in fields)
    return f"{name} {{ {body} }}"


def _verbalize(verbalizer, name: str, fields: Sequence[tuple[str, str]]) -> str:
    return verbalizer(_serialize(name, fields)).strip()


def _plain_number(raw: str, rendered: str) -> str | None:
    """A cardinal as written: digits (a long digit string without the grammar's grouping spaces:
    400 888 8888 -> 4008888888), or None for approximations (8~9) and anything else."""
    if not rendered or "~" in rendered:
        return None
    if " " in rendered:
        if not all(c in _DIGIT for c in raw):
            return None  # 九九八十一 -> "998 11"
        rendered = rendered.replace(" ", "")
    return _myriads(raw, rendered) if _WRITTEN_CARDINAL.fullmatch(rendered) else None


def _myriads(spoken: str, digits: str) -> str:
    """A round number said in 万 or 亿 keeps it, as Chinese writes it: 五万 -> 5万, not 50000."""
    for unit, zeros in (("亿", "0" * 8), ("万", "0" * 4)):
        if spoken.endswith(unit) and digits.isdigit() and digits.endswith(zeros) and len(digits) > len(zeros):
            return digits[:-len(zeros)] + unit
    return digits


def _small_int(spoken: str) -> int | None:
    """0..9999 said in characters: digit by digit (零五, 二零二四) or with 十/百/千 (二十五)."""
    if not spoken:
        return None
    if all(c in _DIGIT for c in spoken):
        return int("".join(str(_DIGIT[c]) for c in spoken))
    total, digit = 0, None
    for c in spoken:
        if c in _DIGIT:
            if digit:  # two digits in a row inside 十/百/千 form: not a number
                return None
            digit = _DIGIT[c]
        elif c in _SMALL_UNIT:
            total += (1 if digit is None else digit) * _SMALL_UNIT[c]
            digit = None
        else:
            return None
    return total + (digit or 0)


def _render_date(token: _Token) -> str | None:
    out = []
    for key, value in token.fields:
        if key == "preserve_order":
            continue
        number, suffix = value[:-1], value[-1:]
        if key not in ("year", "month", "day") or suffix not in "年月日号" or not number:
            return None
        if key == "year" and all(c in _DIGIT for c in number):
            written = "".join(str(_DIGIT[c]) for c in number)  # 二零零八 -> 2008, 零八 -> 08
        else:
            parsed = _small_int(number)
            limit = {"year": 9999, "month": 12, "day": 31}[key]
            if parsed is None or not (0 < parsed <= limit or (key == "year" and parsed == 0)):
                return None
            written = str(parsed)
        out.append(written + suffix)
    return "".join(out) or None


def _render_time(token: _Token) -> str | None:
    keys = {k for k, _ in token.fields}
    if not keys <= {"noon", "hour", "minute", "second"} or "hour" not in keys:
        return None
    clock = _clock((token.get("hour") or "").rstrip("点时"), token.get("minute"), token.get("second"))
    if clock is None:
        return None
    out, placed = [], False
    for key, value in token.fields:
        if key == "noon":
            out.append(value)  # 下午 stays: the reader wants 下午3:15, not 3:15p.m.
        elif not placed:
            out.append(clock)
            placed = True
    return "".join(out)


def _clock(hour: str, minute: str | None, second: str | None) -> str | None:
    h = _small_int(hour)
    if h is None or h > 24:
        return None
    if not minute:
        return f"{h}点"
    m = {"半": 30, "一刻": 15, "三刻": 45}.get(minute)
    if m is None:
        m = _small_int(minute.removesuffix("分"))
    if m is None or m > 59:
        return None
    if not second:
        return f"{h}:{m:02d}"
    s = _small_int(second.removesuffix("秒"))
    return f"{h}:{m:02d}:{s:02d}" if s is not None and s <= 59 else None


def _jiao_fen(decimal: str) -> int | None:
    """九角五分 -> 95 (hundredths of the unit)."""
    match = re.fullmatch(f"(?:([{''.join(_DIGIT)}])[角毛])?(?:([{''.join(_DIGIT)}])分)?", decimal)
    if not match or not any(match.groups()):
        return None
    jiao, fen = (_DIGIT[g] if g else 0 for g in match.groups())
    return jiao * 10 + fen


def _noon_hour(match: re.Match) -> str:
    hour = _small_int(match.group(2) or match.group(3))
    return f"{match.group(1)}{hour}点" if hour is not None and hour <= 24 else match.group(0)


def _protected_positions(piece: str) -> set[int]:
    positions: set[int] = set()
    for phrase in PROTECTED_PHRASES:
        start = piece.find(phrase)
        while start >= 0:
            positions.update(range(start, start + len(phrase)))
            start = piece.find(phrase, start + 1)
    return positions


def _keeps_meaning(raw: str, rendered: str) -> bool:
    """Every character of the span that is not part of how a number is said must survive, in order
    (a span that renders empty, or drops 第/次/人, is kept as spoken)."""
    if not rendered:
        return False
    kept = iter(rendered)
    return all(c in kept for c in raw if c not in _NUMBER_WORDS and not c.isspace())


_default_lock = threading.Lock()
_default: ChineseITN | None = None


def default_itn() -> ChineseITN:
    """The process's shared grammar, created on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = ChineseITN()
    return _default


def normalize(text: str) -> str:
    """The text with numbers written as numbers; the raw text when ITN cannot run."""
    return default_itn().normalize(text).text


def normalize_text(text: str) -> Normalized:
    """As `normalize`, keeping the raw text and any warning beside the result."""
    return default_itn().normalize(text)


def normalize_texts(texts: Sequence[str]) -> list[Normalized]:
    """Segment texts, each on its own (never word tokens: those keep the recogniser's text)."""
    return default_itn().normalize_many(texts)
