"""The training loop in one process on real binarized data: learning, checkpoints, exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xlm_core.checkpoint import load_checkpoint
from xlm_core.train.loop import TrainHooks, train


class Recorder:
    def __init__(self, keep: Path) -> None:
        self.keep, self.metrics, self.checkpoints, self.temporaries = keep, [], [], []

    def __call__(self, metrics: dict[str, float], checkpoint: Path | None) -> None:
        self.metrics.append(dict(metrics))
        if checkpoint is not None:
            self.temporaries.append(checkpoint.parent)
            dest = self.keep / checkpoint.name
            checkpoint.rename(dest)
            self.checkpoints.append(dest)


def _run(cfg, tmp_path: Path, restore: Path | None = None) -> Recorder:
    recorder = Recorder(tmp_path)
    train(cfg, TrainHooks(restore_dir=restore, report=recorder))
    return recorder


def test_loss_decreases_and_checkpoints_are_complete(prepared, tmp_path):
    cfg = prepared.model_copy(deep=True)
    cfg.train.max_epochs = 2
    run = _run(cfg, tmp_path)
    assert [m["epoch"] for m in run.metrics] == [0.0, 1.0]
    assert run.temporaries and not any(p.exists() for p in run.temporaries)  # nothing left in /tmp
    for key in ("valid_en_mlm_ppl", "valid_fr_mlm_ppl", "valid_en_fr_mlm_ppl", "valid_mlm_ppl", "test_mlm_ppl"):
        assert run.metrics[1][key] < run.metrics[0][key], key
    assert run.metrics[1]["valid_mlm_ppl"] == pytest.approx(
        (run.metrics[1]["valid_en_mlm_ppl"] + run.metrics[1]["valid_fr_mlm_ppl"]) / 2
    )
    state, config = load_checkpoint(run.checkpoints[-1])
    assert {"model", "optimizer", "scheduler", "scaler", "train_state", "ranks", "arch"} <= set(state)
    assert state["train_state"]["update"] == 2 * cfg.train.steps_per_epoch
    assert config["model"]["emb_dim"] == cfg.model.emb_dim
    assert {p.name for p in run.checkpoints[-1].iterdir()} >= {"state.pt", "config.json", "dict.txt", "codes"}


def test_interrupted_and_resumed_run_equals_uninterrupted_run(prepared, tmp_path):
    cfg = prepared.model_copy(deep=True)
    cfg.train.max_epochs = 2
    cfg.train.stopping_criterion = "_valid_mlm_ppl,5"  # its state must survive the interruption too
    for sub in ("a", "b", "c"):
        (tmp_path / sub).mkdir()
    straight = _run(cfg, tmp_path / "a")
    first = cfg.model_copy(deep=True)
    first.train.max_epochs = 1
    interrupted = _run(first, tmp_path / "b")
    resumed = _run(cfg, tmp_path / "c", restore=interrupted.checkpoints[-1])
    assert [m["epoch"] for m in resumed.metrics] == [1.0]
    for key, value in straight.metrics[-1].items():
        if key != "train_tokens_per_s":  # a timing, not a result
            assert resumed.metrics[-1][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    a, _ = load_checkpoint(straight.checkpoints[-1])
    b, _ = load_checkpoint(resumed.checkpoints[-1])
    assert b["train_state"]["stopping"] == pytest.approx(a["train_state"]["stopping"])
    assert b["train_state"]["best"] == pytest.approx(a["train_state"]["best"])
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_training_can_start_from_an_export_of_a_previous_run(prepared, tmp_path):
    from xlm_core.export.from_checkpoint import export_checkpoint

    first = prepared.model_copy(deep=True)
    first.train.max_epochs = 1
    (tmp_path / "a").mkdir()
    run = _run(first, tmp_path / "a")
    export_dir = export_checkpoint(run.checkpoints[-1], tmp_path / "export")
    again = prepared.model_copy(deep=True)
    again.train.max_epochs = 1
    again.optim.lr = 1e-9  # (almost) no update: the evaluation shows the pretrained weights
    again.optim.warmup_updates = 0
    again.model.init_from = str(export_dir)
    (tmp_path / "b").mkdir()
    continued = _run(again, tmp_path / "b")
    assert continued.metrics[0]["valid_mlm_ppl"] == pytest.approx(run.metrics[0]["valid_mlm_ppl"], rel=0.02)
    fresh = prepared.model_copy(deep=True)
    fresh.train.max_epochs = 1
    fresh.optim.lr = 1e-9
    fresh.optim.warmup_updates = 0
    (tmp_path / "c").mkdir()
    untrained = _run(fresh, tmp_path / "c")
    assert continued.metrics[0]["valid_mlm_ppl"] < untrained.metrics[0]["valid_mlm_ppl"]

    wrong = again.model_copy(deep=True)
    wrong.model.emb_dim = 32
    with pytest.raises(ValueError, match="init_from.*differs"):
        train(wrong, TrainHooks(report=lambda metrics, checkpoint: None))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_with_gradient_accumulation(prepared, tmp_path, precision):
    cfg = prepared.model_copy(deep=True)
    cfg.train.max_epochs, cfg.train.steps_per_epoch = 1, 6
    cfg.train.precision = precision
    cfg.optim.accumulate_gradients = 2
    run = _run(cfg, tmp_path)
    state, _ = load_checkpoint(run.checkpoints[-1])
    assert state["train_state"]["update"] == 6
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert run.metrics[0]["valid_mlm_ppl"] < 1e4
    if precision == "fp16":
        assert state["scaler"]["scale"] > 0  # the grad scaler ran and its state is checkpointed
