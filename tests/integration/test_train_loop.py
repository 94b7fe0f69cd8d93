"""The training loop in one process on real binarized data: learning, checkpoints, exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xlm_core.checkpoint import load_checkpoint, read_progress
from xlm_core.train.loop import TrainHooks, train
from xlm_core.train.precision import effective_precision


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
    if precision == "fp16" and effective_precision("fp16", torch.device("cpu")) == "fp16":
        assert state["scaler"]["scale"] > 0  # the grad scaler ran and its state is checkpointed


class MetricRecorder:
    """A MetricLogger keeping what rank 0 logs: (step, metrics) and the tags."""

    def __init__(self) -> None:
        self.logged: list[tuple[int, dict[str, float]]] = []
        self.tags: dict[str, str] = {}

    def log_metrics(self, metrics: dict[str, float], *, step: int) -> None:
        self.logged.append((step, dict(metrics)))

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    def log_artifacts(self, local_dir: Path, artifact_path: str) -> None:
        pass

    def close(self) -> None:
        pass


class CrashError(RuntimeError):
    pass


def test_mid_epoch_checkpoint_resumed_equals_uninterrupted_run(prepared, tmp_path):
    """Checkpoints every 7 updates (30 per epoch, windows of 10): a run stopped after the one at update 35
    (epoch 1, inside a logging window) and resumed from it by `train.resume_from` ends exactly as a run
    without mid-epoch checkpoints: metrics, logged training windows, weights, tags."""
    cfg = prepared.model_copy(deep=True)
    cfg.train.max_epochs = 2
    cfg.train.stopping_criterion = "_valid_mlm_ppl,5"
    for sub in ("a", "b", "c"):
        (tmp_path / sub).mkdir()
    straight_log = MetricRecorder()
    straight = Recorder(tmp_path / "a")
    train(cfg, TrainHooks(report=straight, metric_logger=straight_log))

    chunked = cfg.model_copy(deep=True)
    chunked.checkpoint.every_updates = 7
    first = Recorder(tmp_path / "b")

    def crash_after_update_35(metrics: dict[str, float], checkpoint: Path | None) -> None:
        first(metrics, checkpoint)
        if metrics.get("update") == 35:
            raise CrashError("simulated failure")

    first_log = MetricRecorder()
    with pytest.raises(CrashError):
        train(chunked, TrainHooks(report=crash_after_update_35, metric_logger=first_log))
    assert [m.get("update") for m in first.metrics] == [7.0, 14.0, 21.0, 28.0, None, 35.0]  # None: the end of epoch 0
    saved = read_progress(first.checkpoints[-1])
    assert (saved["update"], saved["epoch"], saved["progress"]["updates"]) == (35, 1, 5)
    assert saved["progress"]["window"]["updates"] == 5.0  # the open window (updates 31-35) is saved

    resumed_cfg = chunked.model_copy(deep=True)
    resumed_cfg.train.resume_from = str(first.checkpoints[-1])
    resumed_log = MetricRecorder()
    resumed = Recorder(tmp_path / "c")
    train(resumed_cfg, TrainHooks(report=resumed, metric_logger=resumed_log))
    assert [m.get("update") for m in resumed.metrics] == [42.0, 49.0, 56.0, None]
    final, expected = resumed.metrics[-1], straight.metrics[-1]
    assert final["epoch"] == 1.0
    for key, value in expected.items():
        if key != "train_tokens_per_s":  # a timing, not a result
            assert final[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key

    def windows(log: MetricRecorder, after: int) -> dict[int, dict[str, float]]:
        return {step: m for step, m in log.logged if "lr" in m and step > after}

    straight_windows, resumed_windows = windows(straight_log, 35), windows(resumed_log, 35)
    assert sorted(resumed_windows) == [40, 50, 60]
    for step, logged in straight_windows.items():
        for key, value in logged.items():
            if key.startswith("train_") or key in ("lr", "grad_norm"):
                assert resumed_windows[step][key] == pytest.approx(value, rel=1e-5), (step, key)
    # Evaluations are logged at the global update, the step axis of the training windows.
    assert [step for step, m in straight_log.logged if "epoch" in m] == [30, 60]
    assert [step for step, m in resumed_log.logged if "epoch" in m] == [60]
    assert resumed_log.tags == straight_log.tags
    assert straight_log.tags["xlm.stop.early"] == "false" and straight_log.tags["xlm.stop.epoch"] == "1"
    a, _ = load_checkpoint(straight.checkpoints[-1])
    b, _ = load_checkpoint(resumed.checkpoints[-1])
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_sample_alpha_and_batching_settings_reach_training(prepared, tmp_path, monkeypatch):
    """`objectives.sample_alpha` drives the masker with the dictionary's count^-alpha scores, and
    `tokens_per_batch: -1` gives TLM batches of `batch_size` pairs."""
    from xlm_core.data.dictionary import Dictionary
    from xlm_core.objectives import mask_scores_from_counts
    from xlm_core.paths import WorkLayout
    from xlm_core.train import step as step_module

    cfg = prepared.model_copy(deep=True)
    cfg.train.max_epochs, cfg.train.steps_per_epoch, cfg.train.eval_max_batches = 1, 6, 1
    cfg.objectives.sample_alpha = 0.5
    cfg.objectives.tokens_per_batch = -1
    seen: list[dict] = []
    real = step_module.prepare_inputs

    def spy(step, batch, **kwargs):
        seen.append({"step": step, "batch": batch, **kwargs})
        return real(step, batch, **kwargs)

    monkeypatch.setattr(step_module, "prepare_inputs", spy)
    _run(cfg, tmp_path)
    expected = mask_scores_from_counts(Dictionary.read(WorkLayout(cfg.workdir).dictionary).counts, 0.5)
    assert len(seen) == 6 and all(torch.equal(call["mask_scores_V"], expected) for call in seen)
    assert not any(call["round_to_8"] for call in seen)  # fp32 on a CPU
    pairs = [call["batch"] for call in seen if call["step"].lang2 is not None]
    assert pairs and all(x1.shape[0] == cfg.objectives.batch_size for (x1, _), _ in pairs)


def test_evaluate_command_scores_a_checkpoint_as_training_did(prepared, tmp_path, capsys):
    """`xlm evaluate --config CONFIG --checkpoint DIR` (the original's --eval_only) prints the epoch's metrics."""
    import json

    import yaml

    from xlm_cli.main import main
    from xlm_core.config import to_dict

    cfg = prepared.model_copy(deep=True)
    cfg.train.max_epochs, cfg.train.steps_per_epoch = 1, 6
    run = _run(cfg, tmp_path)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(to_dict(cfg)), encoding="utf-8")
    assert main(["evaluate", "--config", str(config_path), "--checkpoint", str(run.checkpoints[-1])]) == 0
    printed = capsys.readouterr().out
    scores = json.loads(printed.split("__log__:")[1])
    assert "valid_en_mlm_ppl -> " in printed
    for key in ("valid_en_mlm_ppl", "valid_en_fr_mlm_ppl", "valid_mlm_ppl", "test_mlm_ppl", "test_fr_mlm_acc"):
        assert scores[key] == pytest.approx(run.metrics[-1][key], rel=1e-6), key
    assert main(["evaluate", "--config", str(config_path), "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "no such checkpoint directory" in capsys.readouterr().err
    assert main(["evaluate"]) == 2  # neither a text file nor a config
    assert "--config CONFIG [--checkpoint DIR]" in capsys.readouterr().err
