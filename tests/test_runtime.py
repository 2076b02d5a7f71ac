"""runtime.py: the precision ``auto`` picks comes from the CPU's own flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from charrnn.runtime import cpu_has_fast_bf16


def test_native_bf16_is_what_the_cpu_flags_say():
    """bf16 counts as native only with AVX512-BF16 or AMX: oneDNN also says yes on AVX-512
    CPUs without either, where bf16 autocast trained 6.5x slower than fp32."""
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        pytest.skip("no /proc/cpuinfo to read the CPU flags from")
    flags = set()
    for line in info.read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    if not flags or "avx2" not in flags and "avx512f" not in flags:
        pytest.skip("not an x86 CPU with readable flags")
    assert cpu_has_fast_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)
