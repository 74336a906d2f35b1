"""Export formats: each one read back with the standard library's own parser."""

from __future__ import annotations

import csv
import io
import json
import zipfile

from asr import export
from asr.results import Result


def _results() -> list[Result]:
    return [
        Result(file="会议/a.wav", text="今天天气很好", confidence=0.91234, duration_s=3.25, decode_s=0.01,
               features_s=0.02, model_s=0.2),
        Result(file="broken.wav", duration_s=0.0, error="not a readable audio file"),
        Result(file="b.mp3", text="hello 世界, \"quoted\"", confidence=0.5, duration_s=61.5, model_s=1.5),
        Result(file="a.flac", text="同名文件", confidence=0.7, duration_s=1.0, model_s=0.1),
    ]


def test_txt_single_is_just_the_text():
    assert export.to_txt(_results()[:1]) == "今天天气很好\n"


def test_txt_many_has_headers_and_errors():
    text = export.to_txt(_results())
    assert "# 会议/a.wav\n今天天气很好\n" in text
    assert "# broken.wav\n[error] not a readable audio file\n" in text
    assert text.index("# b.mp3") > text.index("# broken.wav")


def test_json_round_trips_with_status_and_unescaped_chinese():
    text = export.to_json(_results())
    assert "今天天气很好" in text  # not \\u escapes
    rows = json.loads(text)
    assert [r["status"] for r in rows] == ["ok", "error", "ok", "ok"]
    assert rows[0]["file"] == "会议/a.wav" and rows[0]["processing_s"] == 0.23
    assert rows[1]["error"] == "not a readable audio file"
    assert "token_ids" not in rows[0]


def test_csv_has_bom_header_and_quotes_commas():
    text = export.to_csv(_results())
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:])))
    assert tuple(rows[0]) == export.CSV_COLUMNS
    assert len(rows) == 5
    assert rows[3][1] == 'hello 世界, "quoted"'
    assert rows[2][6:] == ["error", "not a readable audio file"]
    assert rows[1][2] == "0.9123"


def test_srt_cues_follow_each_other_and_skip_failures():
    text = export.to_srt(_results())
    cues = text.strip().split("\n\n")
    assert len(cues) == 3
    assert cues[0].splitlines() == ["1", "00:00:00,000 --> 00:00:03,250", "今天天气很好"]
    assert cues[1].splitlines()[1] == "00:00:03,250 --> 00:01:04,750"
    assert cues[2].splitlines()[1] == "00:01:04,750 --> 00:01:05,750"


def test_zip_has_one_txt_per_input_without_name_clashes():
    data = export.to_txt_zip(_results())
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        assert names == ["a.txt", "broken.txt", "b.txt", "a-2.txt"]
        assert archive.read("a.txt").decode("utf-8") == "今天天气很好\n"
        assert archive.read("a-2.txt").decode("utf-8") == "同名文件\n"
        assert archive.read("broken.txt").decode("utf-8").startswith("[error]")


def test_status_of():
    ok, bad = _results()[:2]
    assert export.status_of(ok) == "ok"
    assert export.status_of(bad) == "error: not a readable audio file"
