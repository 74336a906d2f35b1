"""Export formats: each one read back with the standard library's own parser."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest

from asr.results import Result, Segment
from asr.text import export


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


def _timed() -> Result:
    segments = [Segment(0.52, 2.481, "今天天气很好。", 0.9), Segment(2.481, 5.0, "我们去公园，好吗？", 0.8),
                Segment(61.25, 3725.125, "hello 世界", 0.7)]
    return Result(file="会议/a.wav", text="今天天气很好。我们去公园，好吗？hello 世界", duration_s=3726.0,
                  segments=segments)


def test_srt_parses_with_the_srt_package_and_keeps_segment_times():
    import srt

    result = _timed()
    cues = list(srt.parse(export.srt(result)))
    assert [c.content for c in cues] == [s.text for s in result.segments]
    for cue, segment in zip(cues, result.segments, strict=True):
        assert cue.start.total_seconds() == pytest.approx(segment.start_s, abs=5e-4)
        assert cue.end.total_seconds() == pytest.approx(segment.end_s, abs=5e-4)
    assert export.srt(result).splitlines()[1] == "00:00:00,520 --> 00:00:02,481"
    assert "01:02:05,125" in export.srt(result)


def test_vtt_parses_with_webvtt_and_keeps_segment_times(tmp_path):
    import webvtt

    result = _timed()
    path = tmp_path / "a.vtt"
    path.write_text(export.vtt(result), encoding="utf-8")
    captions = webvtt.read(str(path))
    assert [c.text for c in captions] == [s.text for s in result.segments]
    for caption, segment in zip(captions, result.segments, strict=True):
        assert caption.start_in_seconds + caption.start_time.milliseconds / 1000 == pytest.approx(
            segment.start_s, abs=5e-4)
        assert caption.end_in_seconds + caption.end_time.milliseconds / 1000 == pytest.approx(
            segment.end_s, abs=5e-4)


def test_tsv_has_millisecond_times_and_one_row_per_segment():
    rows = list(csv.reader(io.StringIO(export.tsv(_timed())), delimiter="\t"))
    assert rows[0] == ["start", "end", "text"]
    assert rows[1] == ["520", "2481", "今天天气很好。"]
    assert rows[3] == ["61250", "3725125", "hello 世界"]


def test_cues_never_run_backwards_or_hold_line_breaks():
    odd = Result(file="x.wav", text="a b", segments=[Segment(3.0, 3.0, "a\nb"), Segment(1.0, 2.0, "  ")])
    import srt

    cues = list(srt.parse(export.srt(odd)))
    assert len(cues) == 1 and cues[0].content == "a b" and cues[0].end > cues[0].start


def test_zip_has_each_chosen_format_per_input_without_name_clashes():
    results = _results()
    results[0].segments = [Segment(0.0, 3.25, "今天天气很好")]
    data = export.to_zip(results, ["txt", "srt"])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        assert names == ["01_a.wav.txt", "01_a.wav.srt", "02_broken.wav.error.txt", "03_b.mp3.txt",
                         "03_b.mp3.srt", "04_a.flac.txt", "04_a.flac.srt", "results.csv", "results.json"]
        assert archive.read("01_a.wav.txt").decode("utf-8") == "今天天气很好\n"
        assert archive.read("04_a.flac.txt").decode("utf-8") == "同名文件\n"
        assert archive.read("02_broken.wav.error.txt").decode("utf-8").startswith("[error]")
        assert "00:00:03,250" in archive.read("01_a.wav.srt").decode("utf-8")


@pytest.mark.parametrize("text, formats", [("srt", ["srt"]), ("txt, SRT,tsv", ["txt", "srt", "tsv"]),
                                           ("all", list(export.FORMATS)), (["vtt", "json"], ["json", "vtt"])])
def test_formats_are_parsed_in_one_order(text, formats):
    assert export.parse_formats(text) == formats


@pytest.mark.parametrize("text", ["", "doc", "srt,pdf"])
def test_unknown_formats_are_refused(text):
    with pytest.raises(ValueError, match="choose from txt, json, srt, vtt, tsv"):
        export.parse_formats(text)


def test_status_of():
    ok, bad = _results()[:2]
    assert export.status_of(ok) == "ok"
    assert export.status_of(bad) == "error: not a readable audio file"
