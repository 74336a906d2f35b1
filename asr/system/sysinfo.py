"""Everything the System-info tab shows, gathered into one dataclass without any UI code.

Figures come from the running engine (model, device, batch size, caches), torch, pynvml (through
asr.system.gpu) and /proc. On a machine without an NVIDIA GPU the GPU part says so plainly instead of
showing zeros that look like measurements.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from asr.system.cpu import CpuFeatures
from asr.system.gpu import GpuMemory, gpu_memory, process_rss_mb, release_cached_memory
from asr.system.threads import default_cpu_threads

if TYPE_CHECKING:
    from asr.engine import Engine

log = logging.getLogger(__name__)


@dataclass
class SystemInfo:
    model: str
    model_path: str
    parameters: int
    device: str
    dtype: str
    precision: str  # what the model computes in: fp32, bf16, fp16 or int8
    default_batch_size: int
    python_version: str
    torch_version: str
    cuda_build: str  # the CUDA version torch was built for ("none" for CPU-only builds)
    cuda_available: bool
    cudnn_version: str
    funasr_version: str
    gradio_version: str
    gpu: GpuMemory
    cpu_count: int
    torch_threads: int  # the engine's CPU thread budget per model call
    ram_total_mb: float
    ram_available_mb: float
    process_rss_mb: float
    cpu_gemm: str = "torch"  # what runs the linear layers on a CPU
    cpu_lanes: int = 1  # files a CPU batch runs side by side (1: padded batches)
    cpu: CpuFeatures = field(default_factory=CpuFeatures)  # name, vendor, matrix instruction sets
    feature_cache: dict[str, Any] = field(default_factory=dict)
    preload_audio: bool = False
    preload_workers: int = 0
    preload_queue_items: int = 0
    preload_queue_mb: int = 0
    vad: str = "off"
    punctuation: str = "off"
    timestamps: bool = False
    released_mb: float | None = None  # set by refresh(): cached GPU memory handed back

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cpu"] = self.cpu.to_dict()
        return data

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs in reading order, values already formatted for people."""
        g = self.gpu
        rows = [
            ("Model", self.model),
            ("Model path", self.model_path),
            ("Parameters", f"{self.parameters / 1e6:.1f} M ({self.parameters:,})"),
            ("Device", self.device),
            ("Precision", _PRECISION_TEXT[self.precision].format(device=self.device.split(":")[0])
                          + f" (weights {self.dtype})"),
            ("Default batch size", str(self.default_batch_size)),
            ("Python / torch", f"{self.python_version} / {self.torch_version}"),
            ("CUDA (torch build) / available",
             f"{self.cuda_build} / {'yes' if self.cuda_available else 'no'}"),
            ("cuDNN", self.cudnn_version),
            ("FunASR / Gradio", f"{self.funasr_version} / {self.gradio_version}"),
        ]
        if g.available:
            util = "n/a" if g.utilization_pct is None else f"{g.utilization_pct:.0f} %"
            rows += [
                ("GPU", g.name),
                ("GPU memory (whole card)", f"{g.used_mb:,.0f} MB used of {g.total_mb:,.0f} MB, "
                                            f"{g.free_mb:,.0f} MB free"),
                ("torch allocated / reserved",
                 f"{g.torch_allocated_mb:,.0f} MB / {g.torch_reserved_mb:,.0f} MB"),
                ("torch peak allocated / reserved",
                 f"{g.torch_peak_allocated_mb:,.0f} MB / {g.torch_peak_reserved_mb:,.0f} MB"),
                ("GPU utilisation", util),
            ]
            if g.message:
                rows.append(("GPU note", g.message))
        else:
            rows.append(("GPU", g.message or "no NVIDIA GPU"))
        cache = self.feature_cache
        if cache.get("enabled"):
            cache_text = (f"on: {cache.get('entries', 0)} entries, {cache.get('mb', 0)} MB of "
                          f"{cache.get('max_bytes', 0) / 2**20:.0f} MB, hit rate "
                          f"{cache.get('hit_rate', 0) * 100:.0f} %"
                          + (f", disk tier {cache['directory']}: {cache.get('disk_mb', 0)} MB of "
                             f"{cache.get('max_disk_bytes', 0) / 2**20:.0f} MB"
                             if cache.get("directory") else ""))
        else:
            cache_text = "off"
        rows += [
            ("CPU cores / torch threads", f"{self.cpu_count} / {self.torch_threads}"),
        ]
        if self.device == "cpu":
            lanes = (f"a batch's files side by side (up to {self.cpu_lanes}), sharing the "
                     f"{self.torch_threads} threads" if self.cpu_lanes > 1 else "padded batches")
            rows.append(("CPU batches", f"{lanes}; linear layers on {self.cpu_gemm}"))
            rows.append(("CPU", self.cpu.model or "unknown"))
            rows.append(("CPU matrix instructions", self.cpu.describe()))
        rows += [
            ("RAM", f"{self.ram_available_mb:,.0f} MB available of {self.ram_total_mb:,.0f} MB; "
                    f"this process uses {self.process_rss_mb:,.0f} MB"),
            ("Feature cache", cache_text),
            ("Preload audio", (f"on: {self.preload_workers} workers, queue {self.preload_queue_items} "
                               f"items / {self.preload_queue_mb} MB") if self.preload_audio else "off"),
            ("Transcripts", f"speech detection {self.vad}; punctuation {self.punctuation}; "
                            f"sentence times {'on' if self.timestamps else 'off'} by default"),
        ]
        if self.released_mb is not None:
            rows.append(("Released cached GPU memory", f"{self.released_mb:.1f} MB"))
        return rows


_PRECISION_TEXT = {
    "fp32": "fp32",
    "bf16": "bf16 ({device} autocast; CIF, timestamps and the final log-softmax in fp32)",
    "fp16": "fp16 (CUDA autocast; CIF, timestamps and the final log-softmax in fp32)",
    "int8": "int8 linear layers (dynamic), the rest fp32",
}


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cudnn_version() -> str:
    try:
        number = torch.backends.cudnn.version()
    except Exception:  # noqa: BLE001 - a broken cuDNN install must not break the info page
        number = None
    if not number:
        return "none"
    # cuDNN 9 encodes major*10000 + minor*100 + patch; cuDNN 8 used major*1000 + minor*100 + patch.
    major, rest = divmod(number, 10000 if number >= 90000 else 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _meminfo_mb() -> tuple[float, float]:
    """(total, available) RAM in MB from /proc/meminfo; zeros where it cannot be read."""
    values: dict[str, float] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    values[key] = float(rest.split()[0]) / 1024  # kB -> MB
    except (OSError, ValueError, IndexError):
        pass
    return values.get("MemTotal", 0.0), values.get("MemAvailable", 0.0)


def gather(engine: Engine) -> SystemInfo:
    """Read every figure now. Cheap (no model call), so the tab can refresh freely."""
    settings = engine.settings
    loaded = engine.loaded
    total_mb, available_mb = _meminfo_mb()
    preload = settings.preload
    return SystemInfo(
        model=loaded.spec,
        model_path=str(loaded.directory),
        parameters=int(loaded.parameters),
        device=str(loaded.device),
        dtype=loaded.dtype,
        precision=engine.precision,
        default_batch_size=int(engine.default_batch_size),
        python_version=platform.python_version(),
        torch_version=torch.__version__,
        cuda_build=torch.version.cuda or "none",
        cuda_available=torch.cuda.is_available(),
        cudnn_version=_cudnn_version(),
        funasr_version=_version("funasr"),
        gradio_version=_version("gradio"),
        gpu=gpu_memory(loaded.device if loaded.device.type == "cuda" else None),
        cpu_count=default_cpu_threads(),
        # Not torch.get_num_threads(): that is the calling thread's count (a Gradio worker's here).
        torch_threads=engine.recognizer.threads,
        cpu_gemm=engine.linear_kernels,
        cpu_lanes=engine.recognizer.lanes,
        cpu=engine.cpu,
        ram_total_mb=total_mb,
        ram_available_mb=available_mb,
        process_rss_mb=process_rss_mb(),
        feature_cache=engine.cache.stats().to_dict(),
        preload_audio=bool(settings.preload_audio),
        preload_workers=preload.workers,
        preload_queue_items=preload.queue_items,
        preload_queue_mb=preload.queue_mb,
        vad=engine.vad.name + (f" ({settings.vad_model})" if engine.vad.name == "fsmn" else ""),
        punctuation=engine.punctuator.spec if engine.punctuator else "off",
        timestamps=bool(settings.timestamps),
    )


def refresh(engine: Engine) -> SystemInfo:
    """Hand torch's cached GPU blocks back to the driver, then gather; reports the MB freed."""
    freed = release_cached_memory()
    info = gather(engine)
    info.released_mb = freed
    log.info("system info refreshed; released %.1f MB of cached GPU memory", freed)
    return info
