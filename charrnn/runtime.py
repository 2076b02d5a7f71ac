"""Device, precision and thread choices shared by training, evaluation and generation."""

from __future__ import annotations

import contextlib
import platform
from typing import ContextManager

import torch

from .errors import ConfigError


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return cpu


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when torch sees a GPU, else the CPU; ``cuda`` without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for, but torch sees no CUDA GPU (use cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}") from None


def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes in bf16 natively (AVX512-BF16 or AMX).

    oneDNN's own test (``_is_mkldnn_bf16_supported``) is also true on AVX-512 CPUs without
    either, where it emulates bf16: on such a Xeon (AVX-512 and VNNI, no AVX512-BF16) a
    2x256 LSTM training step under bf16 autocast measured 6.5x the fp32 time
    (benchmarks/bf16_without_native.py), so only the CPU flags
    count, read through torch where it can (2.1 and later)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch: oneDNN's answer
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False


def bf16_fallback_note(precision: str, device: torch.device) -> str | None:
    """Why ``precision`` bf16 runs as fp32 on ``device``, or None when it does not."""
    if precision == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        return ("this CPU has no native bf16 (it needs AVX512-BF16 or AMX): running fp32 instead, "
                "which is faster here and exact")
    return None


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or None for plain fp32.

    ``auto`` picks bf16 where the hardware runs it natively (measured about 2x faster
    for the recurrent layers on an AMX CPU), else fp32. ``bf16`` on a CPU without native
    bf16 also runs fp32 (``bf16_fallback_note`` says so): there oneDNN has no bf16 LSTM
    kernel at all, and the emulated bf16 GRU and RNN are slower than fp32 (measured in
    benchmarks/RESULTS.md), so fp32 is the one useful meaning of the request.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("this GPU does not support bf16; use precision fp32")
        if bf16_fallback_note(precision, device):
            return None
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_threads(threads: int | None) -> None:
    """Give torch this many CPU threads (--threads); None leaves its choice."""
    if threads:
        torch.set_num_threads(threads)
