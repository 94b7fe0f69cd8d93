"""The autocast precision training actually runs with: `train.precision`, unless the CPU cannot run it fast.

On a CPU without bf16 (or fp16) matrix instructions, PyTorch emulates the half type: here (AVX2, no
AVX-512-BF16 or AMX) a 512x512 bf16 matmul takes 30x the fp32 time on one thread, and the gap
grows with the size, so `train.precision: bf16` on such a CPU makes training crawl without a
word. Training then runs in fp32 and says so once. CUDA devices keep the configured precision.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

__all__ = ["cpu_has_fast", "effective_precision"]

logger = logging.getLogger(__name__)

# /proc/cpuinfo flags (x86 `flags`, ARM `Features`) that make each half type fast on a CPU.
_FAST_FLAGS = {
    "bf16": frozenset({"avx512_bf16", "amx_bf16", "bf16"}),
    "fp16": frozenset({"avx512_fp16", "amx_fp16", "fphp"}),
}
_CPUINFO = Path("/proc/cpuinfo")


def _cpu_flags(cpuinfo: str) -> set[str]:
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags


def cpu_has_fast(precision: str, cpuinfo: str | None = None) -> bool | None:
    """Whether the CPU has instructions for `precision` ("bf16" or "fp16"); None when it cannot be told.

    `cpuinfo` is the text of /proc/cpuinfo (read when not given); None is returned without one
    (not Linux) or when it lists no flags.
    """
    if cpuinfo is None:
        try:
            cpuinfo = _CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    flags = _cpu_flags(cpuinfo)
    if not flags:
        return None
    return not flags.isdisjoint(_FAST_FLAGS[precision])


def effective_precision(precision: str, device: torch.device, *, cpuinfo: str | None = None) -> str:
    """`precision`, or "fp32" (with one warning) for a half precision on a CPU that would emulate it."""
    if device.type != "cpu" or precision not in _FAST_FLAGS:
        return precision
    fast = cpu_has_fast(precision, cpuinfo)
    if fast is None:
        logger.info("train.precision %s on a CPU whose instruction set is unknown: kept", precision)
        return precision
    if fast:
        return precision
    wanted = " or ".join(sorted(flag for flag in _FAST_FLAGS[precision] if "_" in flag))
    logger.warning(
        "train.precision is %s, but this CPU has no %s instructions (%s in /proc/cpuinfo): PyTorch would "
        "emulate %s far slower than fp32, so training runs in fp32. Set train.precision: fp32 to silence this, "
        "or train on a GPU",
        precision,
        precision,
        wanted,
        precision,
    )
    return "fp32"
