"""Names for a result's speakers (S1 -> 主持人), so the downloads say who spoke.

Diarization can only number voices; the user knows who they are. The single tab keeps its last
result on the server (per browser session) and writes the downloads again from a renamed copy,
so every format carries the names the same way it carries the labels (asr.text.export). Two
labels given one name become one speaker: a voice split in two is mended the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from asr.results import Result
from ui.i18n import register, tr

MAX_NAME_CHARS = 40  # a name in a subtitle line, not a paragraph
HEADERS = ["Speaker", "Name"]  # the rename endpoint's table (English, as all API words)
VIEW_KEYS = ("names.col_label", "names.col_name")

register("names", {
    "title": "Rename speakers",
    "help": "Type a name for each speaker (S1 → 主持人), then apply: the downloads are written again "
            "with the names. Two speakers given one name become one.",
    "col_label": "Speaker",
    "col_name": "Name",
    "apply": "Apply the names to the downloads",
    "nothing": "There is no result with speakers to rename: choose Speakers (auto or a count), then Start.",
    "done": "The downloads now name {count} speaker(s).",
    "none_named": "No names given: the downloads keep the labels.",
}, {
    "title": "重命名说话人",
    "help": ("为每位说话人填写名称（S1 → 主持人），再点应用：下载文件会用这些名称重新生成。"
             "两位说话人填同一名称即合并为一人。"),
    "col_label": "说话人",
    "col_name": "名称",
    "apply": "应用名称并更新下载",
    "nothing": "没有可重命名的说话人：请先选择“说话人”（自动或人数），再开始识别。",
    "done": "下载文件已使用 {count} 位说话人的名称。",
    "none_named": "未填写名称：下载文件保留原标签。",
})


def clean(name: Any) -> str:
    """One line of at most MAX_NAME_CHARS: a name may not break a subtitle, a TSV row or a cue."""
    return " ".join(str(name or "").split())[:MAX_NAME_CHARS].strip()


def table(result: Result | None, lang: str) -> dict:
    """The page's names table: each label of `result`, in order of first appearance, unnamed."""
    labels = (result.speakers or []) if result is not None else []
    return {"headers": [tr(key, lang) for key in VIEW_KEYS], "data": [[label, ""] for label in labels]}


def names_from(rows: Any, labels: list[str]) -> dict[str, str]:
    """label -> name from a table's rows ([label, name], or {"data": ...}); rows naming no label
    of the result, blank names and names equal to their label are left out."""
    data = rows.get("data", []) if isinstance(rows, Mapping) else (rows or [])
    names = {}
    for row in data:
        if not isinstance(row, (list, tuple)) or len(row) < 2:
            continue
        label, name = str(row[0]).strip(), clean(row[1])
        if label in labels and name and name != label:
            names[label] = name
    return names


def renamed(result: Result, names: Mapping[str, str]) -> Result:
    """A copy of `result` whose segments, words and speaker list carry the names."""
    def new(label: str | None) -> str | None:
        return names.get(label, label) if label is not None else None

    segments = []
    for s in result.segments:
        words = None if s.words is None else [dataclasses.replace(w, speaker=new(w.speaker)) for w in s.words]
        segments.append(dataclasses.replace(s, speaker=new(s.speaker), words=words))
    speakers = list(dict.fromkeys(new(s) for s in result.speakers)) if result.speakers is not None else None
    return dataclasses.replace(result, segments=segments, speakers=speakers)
