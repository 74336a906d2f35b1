"""GPU and process memory figures from pynvml and torch, with a plain answer when there is no GPU."""

from __future__ import annotations

import logging
import os
import resource
from dataclasses import asdict, dataclass

import torch

log = logging.getLogger(__name__)


@dataclass
class GpuMemory:
    available: bool
    name: str = ""
    total_mb: float = 0.0
    used_mb: float = 0.0  # whole card, all processes (pynvml)
    free_mb: float = 0.0
    utilization_pct: float | None = None
    torch_allocated_mb: float = 0.0
    torch_reserved_mb: float = 0.0
    torch_peak_allocated_mb: float = 0.0
    torch_peak_reserved_mb: float = 0.0
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


_MB = 2**20


def _nvml_figures(index: int) -> dict:
    try:
        import pynvml  # deliberate lazy import: NVML only when GPU figures are asked for
    except ImportError:
        return {"message": "pynvml is not installed"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return {"message": f"no NVIDIA GPU (NVML: {exc})"}
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        name = pynvml.nvmlDeviceGetName(handle)
        try:
            util = float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except pynvml.NVMLError:
            util = None
        return {
            "name": name.decode() if isinstance(name, bytes) else name,
            "total_mb": memory.total / _MB, "used_mb": memory.used / _MB,
            "free_mb": memory.free / _MB, "utilization_pct": util,
        }
    except pynvml.NVMLError as exc:
        return {"message": f"NVML error: {exc}"}
    finally:
        pynvml.nvmlShutdown()


def gpu_memory(device: torch.device | None = None) -> GpuMemory:
    if not torch.cuda.is_available():
        return GpuMemory(available=False, message="no NVIDIA GPU: running on the CPU")
    index = device.index if device is not None and device.index is not None else 0
    figures = _nvml_figures(index)
    info = GpuMemory(available=True, **figures)
    if not info.name:
        info.name = torch.cuda.get_device_name(index)
    if not info.total_mb:
        info.total_mb = torch.cuda.get_device_properties(index).total_memory / _MB
    info.torch_allocated_mb = torch.cuda.memory_allocated(index) / _MB
    info.torch_reserved_mb = torch.cuda.memory_reserved(index) / _MB
    info.torch_peak_allocated_mb = torch.cuda.max_memory_allocated(index) / _MB
    info.torch_peak_reserved_mb = torch.cuda.max_memory_reserved(index) / _MB
    return info


def release_cached_memory() -> float:
    """Hand torch's cached blocks back to the driver; returns the MB freed (0 without a GPU)."""
    if not torch.cuda.is_available():
        return 0.0
    before = torch.cuda.memory_reserved()
    torch.cuda.empty_cache()
    freed = (before - torch.cuda.memory_reserved()) / _MB
    log.info("released %.1f MB of cached GPU memory", freed)
    return freed


def reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def process_rss_mb() -> float:
    """Resident memory of this process now (Linux /proc), the CPU stand-in for GPU memory."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / _MB
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
