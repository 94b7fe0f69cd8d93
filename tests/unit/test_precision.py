"""bf16/fp16 on a CPU without their instructions: training falls back to fp32 with one warning."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from tests.support.tiny import tiny_arch
from xlm_core.config import load_config
from xlm_core.model import XLMWithLMHeadModel
from xlm_core.objectives.inputs import StepSpec
from xlm_core.train import step as step_module
from xlm_core.train.optim import build_optimizer
from xlm_core.train.precision import cpu_has_fast, effective_precision

CPU = torch.device("cpu")
# Trimmed /proc/cpuinfo texts: an AVX2 server (this kind of machine), a Sapphire Rapids with AMX, a Graviton3.
AVX2 = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512bw\n\n" * 2
SAPPHIRE = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\nCPU implementer\t: 0x41\n"


def test_detection_from_cpuinfo_flags():
    assert cpu_has_fast("bf16", AVX2) is False and cpu_has_fast("fp16", AVX2) is False
    assert cpu_has_fast("bf16", SAPPHIRE) is True and cpu_has_fast("fp16", SAPPHIRE) is True
    assert cpu_has_fast("bf16", GRAVITON3) is True and cpu_has_fast("fp16", GRAVITON3) is False
    assert cpu_has_fast("bf16", "") is None  # no flags listed: cannot tell
    # `avx512_bf16` must be a whole flag, not part of another word
    assert cpu_has_fast("bf16", "flags\t: avx512_bf16x notbf16\n") is False


def test_slow_cpu_falls_back_to_fp32_with_one_warning(caplog):
    with caplog.at_level(logging.INFO, logger="xlm_core.train.precision"):
        assert effective_precision("bf16", CPU, cpuinfo=AVX2) == "fp32"
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "train.precision is bf16, but this CPU has no bf16 instructions (amx_bf16 or avx512_bf16 in "
        "/proc/cpuinfo): PyTorch would emulate bf16 far slower than fp32, so training runs in fp32. Set "
        "train.precision: fp32 to silence this, or train on a GPU"
    )


@pytest.mark.parametrize(
    "precision,device,cpuinfo,expected",
    [
        ("bf16", CPU, SAPPHIRE, "bf16"),
        ("fp16", CPU, AVX2, "fp32"),
        ("fp32", CPU, AVX2, "fp32"),
        ("bf16", torch.device("cuda", 0), AVX2, "bf16"),  # the GPU runs it, whatever the host CPU
        ("fp16", torch.device("cuda", 0), AVX2, "fp16"),
        ("bf16", CPU, "", "bf16"),  # unknown CPU: kept as configured
    ],
)
def test_kept_where_it_runs_fast_or_cannot_be_told(precision, device, cpuinfo, expected, caplog):
    with caplog.at_level(logging.WARNING, logger="xlm_core.train.precision"):
        assert effective_precision(precision, device, cpuinfo=cpuinfo) == expected
    assert bool(caplog.records) == (expected != precision)


def test_this_machine_matches_its_cpuinfo():
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    expected = "bf16" if {"avx512_bf16", "amx_bf16", "bf16"} & set(flags.split()) else "fp32"
    assert effective_precision("bf16", CPU) == expected


def test_train_step_autocasts_with_the_precision_it_is_given(monkeypatch):
    """The loop passes the effective precision: fp32 means no autocast even though the config says bf16."""
    cfg = load_config(REPO / "configs" / "tiny.yaml", {"train.precision": "bf16"})
    model = XLMWithLMHeadModel(tiny_arch(40))
    optimizer, scheduler = build_optimizer(list(model.parameters()), cfg.optim)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    calls: list[torch.dtype] = []

    def recording_autocast(device_type: str, dtype: torch.dtype) -> contextlib.AbstractContextManager[None]:
        calls.append(dtype)
        return contextlib.nullcontext()

    monkeypatch.setattr(step_module.torch, "autocast", recording_autocast)

    def run(precision: str | None) -> None:
        step_module.train_step(
            model,
            optimizer,
            scheduler,
            scaler,
            StepSpec("clm", "en"),
            iter([torch.randint(14, 40, (2, 8))]),
            cfg=cfg,
            lang2id=cfg.lang2id,
            vocab_size=40,
            generator=torch.Generator().manual_seed(0),
            device=CPU,
            precision=precision,
        )

    run("fp32")
    assert calls == []
    run(None)  # default: the configured precision
    assert calls == [torch.bfloat16]
