"""The UI's words in Chinese (the default) and English, through Gradio's own i18n (`gr.I18n`).

Static words (labels, buttons, help, tab names) are `t(key)` markers that the browser translates
with the tables below, and re-translates when the language changes. Words made while a request
runs (progress, summaries, errors, table headers, the system table) are written on the server in
the page's language, `tr(key, lang, ...)`, from the same tables; the page's language reaches the
server in the `seaco-lang` cookie, which the page sets on load and on every switch. Callers
without it (gradio_client, scripts) get English, as the OpenAI-compatible API does.

Chinese is the default whatever the browser's language: the page asks Gradio's own runtime
(`changeLocale` of its core module, the function its Settings panel calls) for the saved or
default language as it loads. Each tab module adds its own words with `register` at import time,
under its own key prefix ("tuning.", "live."), before the app is built.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import gradio as gr
from gradio.i18n import I18nData

log = logging.getLogger(__name__)

ZH = "zh-CN"
EN = "en"
DEFAULT_LANG = ZH
LANGUAGES = ((ZH, "中文"), (EN, "English"))
COOKIE = "seaco-lang"
STORAGE_KEY = "seaco-lang"
# Locales a browser or Gradio's Settings panel may pick that should read the Chinese table.
_ZH_ALIASES = ("zh", "zh-TW", "zh-HK", "zh-Hans")

EN_WORDS: dict[str, str] = {
    # the page
    "app.subtitle": "FunASR SeACo-Paraformer · model `{model}` on `{device}`",
    "app.language": "Language",
    "tab.single": "Single file",
    "tab.batch": "Batch",
    "tab.live": "Realtime",
    "tab.tuning": "Tuning",
    "tab.system": "System",
    # shared
    "common.hotwords": "Hotwords (up to {count}, each at most {chars} characters; spaces or commas between)",
    "common.hotwords_placeholder": "e.g. 达摩院 魔搭",
    "common.start": "Start",
    "common.busy": "Working…",
    "common.cancel": "Cancel",
    "common.advanced": "Advanced",
    "common.batch_size": "Batch size",
    "common.batch_size_info": ("How many pieces of audio the model takes at once. Most people never "
                               "need to change it: the Tuning tab measures the best value for this "
                               "machine and sets it for everyone."),
    "common.timestamps": "Sentence times",
    "common.timestamps_info": ("Cut the text into timed sentences. Always on while a subtitle format is "
                               "chosen."),
    "common.formats": "Download formats",
    "common.cancelled": "Cancelled: the model stopped working on this request.",
    "common.cancelled_title": "Cancelled",
    "common.unexpected": "Unexpected server error ({error}); details are in the server log.",
    "common.no_file": "Upload or record an audio file first.",
    "common.no_files": "Upload one or more audio files first.",
    "common.progress": "{stage} · {done} of {total} s of audio{eta}",
    "common.progress_files": " · file {file} ({files_done}/{files_total} done)",
    "common.eta": " · about {left} left",
    "common.seconds": "{n} s",
    "common.minutes": "{m} min {s} s",
    "stage.decoding": "decoding",
    "stage.speech detection": "finding speech",
    "stage.recognition": "recognising",
    "stage.punctuation": "punctuating",
    "stage.done": "done",
    "common.oom_backoff": "Ran out of GPU memory at batch size {size}; finished at {used}.",
    "common.speakers": "Speakers",
    "common.speakers_info": ("Label who spoke each sentence: off, found automatically, or the number of "
                             "speakers when you know it (you may type one)."),
    "common.speakers_off": "Off",
    "common.speakers_auto": "Auto",
    "common.speakers_n": "{n} speakers",
    "common.itn": "Numbers as digits",
    "common.itn_info": ("二零二四年三月五日 → 2024年3月5日, 百分之五 → 5%. The JSON download keeps the text "
                        "as recognised."),
    # single file
    "single.upload": "Audio or video file (wav, mp3, flac, ogg, m4a, aac, mp4, webm, …)",
    "single.mic": "…or record (used when the recording stops)",
    "single.player": "Listen",
    "single.video": "Watch",
    "single.text": "Text",
    "single.confidence": "Confidence",
    "single.figures_help": ("**Confidence**: how sure the model was, 0 to 1 (the average probability of "
                            "its words); near 1, trust the text; 0.008 means almost no confidence: noise, "
                            "another language, or a test model. **× real time**: seconds of audio per "
                            "second of work; 30 means a minute of audio took 2 s."),
    "single.duration": "Audio length (s)",
    "single.processing": "Processing time (s)",
    "single.speed": "Speed (× real time)",
    "single.sentences": "Sentences: click one to hear it, tick some to cut a clip",
    "single.chunks": "Speech segments (sentence times are off): click one to hear it",
    "single.col_pick": "✓",
    "single.col_start": "Start",
    "single.col_end": "End",
    "single.col_text": "Text",
    "single.col_speaker": "Speaker",
    "single.downloads": "Downloads",
    "single.clip": "Cut the ticked sentences",
    "single.clips": "Clips",
    "single.clip_none": "Tick one or more sentences first.",
    "single.clip_audio": "Sound of {count} sentence(s): {seconds:.1f} s.",
    "single.clip_video": (" The video is copied without re-encoding, so it starts and ends at keyframes: "
                          "{ranges}."),
    "single.clip_failed": "No clip: {reason}",
    # batch
    "batch.limits": "Up to **{files} files** and **{mb} MB** per batch. One bad file fails alone.",
    "batch.files": "Audio files",
    "batch.start": "Transcribe uploads",
    "batch.folder": "…or a server folder (searched recursively)",
    "batch.folder_allowed": "Allowed: {roots}",
    "batch.folder_off": ("Folder input is off: list server folders under `batch.allowed_dirs` in "
                         "config.yaml to enable it."),
    "batch.folder_start": "Transcribe folder",
    "batch.formats": "Formats in the zip",
    "batch.results": "Results: click a row for its full text",
    "batch.detail": "Full text of the chosen file",
    "batch.exports": "Export (CSV, JSON, zip of the chosen formats)",
    "batch.col_status": "Status",
    "batch.col_file": "File",
    "batch.col_text": "Text",
    "batch.col_preview": "Text (first line)",
    "batch.col_confidence": "Confidence",
    "batch.col_duration": "Length (s)",
    "batch.col_processing": "Time (s)",
    "batch.ok": "✓ ok",
    "batch.no_speech": "✓ no speech found",
    "batch.failed": "✗ failed: {error}",
    "batch.summary": ("**{files} file(s): {ok} ok, {failed} failed** · {audio:.1f} s of audio in "
                      "{wall:.2f} s ({speed:.1f}x real time) · batch size {size}"),
    "batch.summary_backoff": (" · ran out of GPU memory {count} time(s) and fell back to smaller batches: "
                              "choose a smaller batch size"),
    "batch.some_failed": "{failed} of {files} file(s) failed; they are at the top of the table.",
    "batch.links_skipped": "Skipped {count} file link(s) that lead outside the allowed folders.",
    # system
    "system.refresh": "Refresh (releases cached GPU memory)",
    "system.raw": "Raw figures (JSON)",
    "system.col_figure": "Figure",
    "system.col_value": "Value",
}

ZH_WORDS: dict[str, str] = {
    "app.subtitle": "FunASR SeACo-Paraformer · 模型 `{model}`，运行于 `{device}`",
    "app.language": "语言",
    "tab.single": "单个文件",
    "tab.batch": "批量",
    "tab.live": "实时",
    "tab.tuning": "调优",
    "tab.system": "系统",
    "common.hotwords": "热词（最多 {count} 个，每个不超过 {chars} 个字；用空格或逗号分隔）",
    "common.hotwords_placeholder": "例如：达摩院 魔搭",
    "common.start": "开始识别",
    "common.busy": "正在识别…",
    "common.cancel": "取消",
    "common.advanced": "高级选项",
    "common.batch_size": "批大小",
    "common.batch_size_info": ("模型一次处理多少段音频。大多数人无需修改：「调优」页会在这台机器上"
                               "测出最合适的值并为所有人设置。"),
    "common.timestamps": "句子时间",
    "common.timestamps_info": "把文本切成带时间的句子。选择了字幕格式时总是开启。",
    "common.formats": "下载格式",
    "common.cancelled": "已取消：模型已停止处理这个请求。",
    "common.cancelled_title": "已取消",
    "common.unexpected": "服务器意外出错（{error}）；详情见服务器日志。",
    "common.no_file": "请先上传或录制一个音频文件。",
    "common.no_files": "请先上传一个或多个音频文件。",
    "common.progress": "{stage} · 已处理 {done} / {total} 秒音频{eta}",
    "common.progress_files": " · 文件 {file}（已完成 {files_done}/{files_total}）",
    "common.eta": " · 预计还需 {left}",
    "common.seconds": "{n} 秒",
    "common.minutes": "{m} 分 {s} 秒",
    "stage.decoding": "解码",
    "stage.speech detection": "检测语音",
    "stage.recognition": "识别",
    "stage.punctuation": "加标点",
    "stage.done": "完成",
    "common.oom_backoff": "批大小 {size} 时 GPU 显存不足；已改用 {used} 完成。",
    "common.speakers": "说话人",
    "common.speakers_info": "标出每句话是谁说的：关闭、自动判断人数，或填写已知的人数（可直接输入数字）。",
    "common.speakers_off": "关闭",
    "common.speakers_auto": "自动",
    "common.speakers_n": "{n} 人",
    "common.itn": "数字规范化",
    "common.itn_info": "二零二四年三月五日 → 2024年3月5日，百分之五 → 5%。JSON 下载中保留识别原文。",
    "single.upload": "音频或视频文件（wav、mp3、flac、ogg、m4a、aac、mp4、webm 等）",
    "single.mic": "……或录音（停止录音后使用）",
    "single.player": "试听",
    "single.video": "观看",
    "single.text": "识别结果",
    "single.confidence": "置信度",
    "single.figures_help": ("**置信度**：模型对结果有多大把握，0 到 1（各字概率的平均值）；"
                            "接近 1 时文本可信，0.008 表示几乎没有把握：噪声、其他语言或测试用模型。"
                            "**倍实时**：每秒处理多少秒音频，30 表示 1 分钟的音频用了 2 秒。"),
    "single.duration": "音频时长（秒）",
    "single.processing": "处理用时（秒）",
    "single.speed": "速度（倍实时）",
    "single.sentences": "句子：点击一句即可试听，勾选若干句可导出片段",
    "single.chunks": "语音片段（未开启句子时间）：点击即可试听",
    "single.col_pick": "✓",
    "single.col_start": "开始",
    "single.col_end": "结束",
    "single.col_text": "文本",
    "single.col_speaker": "说话人",
    "single.downloads": "下载",
    "single.clip": "导出勾选句子的片段",
    "single.clips": "片段",
    "single.clip_none": "请先勾选一句或多句。",
    "single.clip_audio": "{count} 句的声音：共 {seconds:.1f} 秒。",
    "single.clip_video": " 视频未重新编码，直接复制，因此从关键帧开始、到关键帧结束：{ranges}。",
    "single.clip_failed": "无法导出片段：{reason}",
    "batch.limits": "每批最多 **{files} 个文件**、**{mb} MB**。单个坏文件只会自己失败。",
    "batch.files": "音频文件",
    "batch.start": "识别上传的文件",
    "batch.folder": "……或服务器上的文件夹（包括子文件夹）",
    "batch.folder_allowed": "允许的位置：{roots}",
    "batch.folder_off": ("文件夹输入未开启：在 config.yaml 的 `batch.allowed_dirs` 中列出服务器文件夹"
                         "即可开启。"),
    "batch.folder_start": "识别文件夹",
    "batch.formats": "压缩包中的格式",
    "batch.results": "结果：点击一行查看全文",
    "batch.detail": "所选文件的全文",
    "batch.exports": "导出（CSV、JSON、所选格式的压缩包）",
    "batch.col_status": "状态",
    "batch.col_file": "文件",
    "batch.col_text": "文本",
    "batch.col_preview": "文本（首行）",
    "batch.col_confidence": "置信度",
    "batch.col_duration": "时长（秒）",
    "batch.col_processing": "用时（秒）",
    "batch.ok": "✓ 完成",
    "batch.no_speech": "✓ 未发现语音",
    "batch.failed": "✗ 失败：{error}",
    "batch.summary": ("**{files} 个文件：{ok} 个成功，{failed} 个失败** · {audio:.1f} 秒音频"
                      "用时 {wall:.2f} 秒（{speed:.1f} 倍实时）· 批大小 {size}"),
    "batch.summary_backoff": " · GPU 显存不足 {count} 次，已退回更小的批：请选更小的批大小",
    "batch.some_failed": "{files} 个文件中有 {failed} 个失败，已排在表格最上方。",
    "batch.links_skipped": "跳过了 {count} 个指向允许范围之外的文件链接。",
    "system.refresh": "刷新（释放缓存的 GPU 显存）",
    "system.raw": "原始数据（JSON）",
    "system.col_figure": "项目",
    "system.col_value": "数值",
}

# The system tab's rows (asr.system.sysinfo labels them in English).
SYSTEM_ROWS_ZH = {
    "Model": "模型", "Model path": "模型路径", "Parameters": "参数量", "Device": "设备", "Precision": "精度",
    "Default batch size": "默认批大小", "Python / torch": "Python / torch",
    "CUDA (torch build) / available": "CUDA（torch 构建）/ 可用", "cuDNN": "cuDNN",
    "FunASR / Gradio": "FunASR / Gradio", "GPU": "GPU", "GPU memory (whole card)": "GPU 显存（整卡）",
    "torch allocated / reserved": "torch 已分配 / 已保留",
    "torch peak allocated / reserved": "torch 峰值分配 / 保留",
    "GPU utilisation": "GPU 利用率", "GPU note": "GPU 说明",
    "CPU cores / torch threads": "CPU 核数 / torch 线程",
    "CPU batches": "CPU 批处理", "CPU": "CPU", "CPU matrix instructions": "CPU 矩阵指令", "RAM": "内存",
    "Feature cache": "特征缓存", "Preload audio": "预加载音频", "Transcripts": "转写设置",
    "Released cached GPU memory": "已释放的 GPU 缓存",
}

WORDS: dict[str, dict[str, str]] = {EN: dict(EN_WORDS), ZH: dict(ZH_WORDS)}
WORDS[ZH].update({f"system.row.{k}": v for k, v in SYSTEM_ROWS_ZH.items()})
WORDS[EN].update({f"system.row.{k}": k for k in SYSTEM_ROWS_ZH})

# Gradio's i18n: the browser translates `t(key)` markers with these tables. The same dict objects,
# so words `register`ed later reach it.
I18N = gr.I18n(**{EN: WORDS[EN], ZH: WORDS[ZH], **{alias: WORDS[ZH] for alias in _ZH_ALIASES}})


def register(prefix: str, en: Mapping[str, str], zh: Mapping[str, str]) -> None:
    """Add a tab's words under `prefix.` (call at import time, before the app is built).

    Every key needs both languages: a missing one would show the key itself to someone."""
    missing = set(en) ^ set(zh)
    if missing:
        raise ValueError(f"words without both languages: {sorted(missing)}")
    for key in en:
        full = f"{prefix}.{key}"
        WORDS[EN][full], WORDS[ZH][full] = en[key], zh[key]


def t(key: str) -> I18nData:
    """A static word for a component (label, info, button): translated in the browser."""
    if key not in WORDS[EN]:
        raise KeyError(f"no words for {key!r}")
    return I18N(key)


def tf(key: str, **values: Any) -> I18nData:
    """A static word with values fixed when the app is built (limits from config.yaml): each
    language's text is filled in once, under a key of its own, and translated in the browser."""
    if key not in WORDS[EN]:
        raise KeyError(f"no words for {key!r}")
    full = key + "|" + "|".join(f"{name}={values[name]}" for name in sorted(values))
    for lang in (EN, ZH):
        WORDS[lang][full] = WORDS[lang].get(key, WORDS[EN][key]).format(**values)
    return I18N(full)


def normalize(lang: str | None) -> str:
    """One of ZH or EN for any locale string; unknown or missing -> EN (API callers)."""
    if not lang:
        return EN
    lang = lang.strip()
    if lang == ZH or lang.split("-")[0].lower() == "zh":
        return ZH
    return EN


def tr(key: str, lang: str, **values: Any) -> str:
    """Words made on the server, in `lang` (falling back to English), with `values` filled in."""
    table = WORDS.get(normalize(lang), WORDS[EN])
    text = table.get(key, WORDS[EN].get(key, key))
    return text.format(**values) if values else text


def lang_of(request: gr.Request | None) -> str:
    """The page's language from its cookie; English for callers without one (the API)."""
    if request is None:
        return EN
    try:
        cookies = getattr(request, "cookies", None) or {}
        return normalize(cookies.get(COOKIE))
    except Exception:  # noqa: BLE001 - a request object without cookies is an API caller
        return EN


# Sets Gradio's locale (through `changeLocale` of its core module, found among the page's loaded
# scripts), the cookie the server reads and the saved choice. Defined by the load script.
_DEFINE_SET_LANGUAGE = f"""
window.seacoSetLanguage = window.seacoSetLanguage || (async (lang) => {{
  document.cookie = "{COOKIE}=" + encodeURIComponent(lang) + "; path=/; max-age=31536000; SameSite=Lax";
  localStorage.setItem("{STORAGE_KEY}", lang);
  document.documentElement.setAttribute("lang", lang);
  const names = performance.getEntriesByType("resource").map((e) => e.name);
  const link = document.querySelector('link[rel="modulepreload"][href*="/core-"]');
  const url = names.find((n) => /\\/assets\\/core-[^/]*\\.js$/.test(n)) || (link && link.href);
  if (!url) {{ console.warn("seaco: Gradio's core module not found; the language stays"); return lang; }}
  const core = await import(url);
  core.changeLocale(lang);
  return lang;
}});
"""

# Runs in the page as it loads: the saved (or default) language in place of the first input (the
# language switch); the other inputs pass through to the server's language hooks.
LOAD_JS = f"""
async (...values) => {{
  {_DEFINE_SET_LANGUAGE}
  const lang = localStorage.getItem("{STORAGE_KEY}") || "{DEFAULT_LANG}";
  await window.seacoSetLanguage(lang);
  return [lang, ...values.slice(1)];
}}
"""

SWITCH_JS = """
async (lang, ...values) => {
  if (window.seacoSetLanguage) { await window.seacoSetLanguage(lang); }
  return [lang, ...values];
}
"""
