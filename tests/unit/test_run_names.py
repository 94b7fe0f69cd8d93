"""Ray run names: the identity of a training or fine-tuning setup, used to resume or start afresh."""

from __future__ import annotations

import os

from tests.conftest import REPO
from xlm_core.config import load_config
from xlm_core.train.ray_launcher import finetune_run_name, ray_run_name


def test_finetune_name_follows_the_data_content_not_only_its_path(tmp_path):
    cfg = load_config(REPO / "configs" / "tiny.yaml", {"experiment.workdir": str(tmp_path / "work")})
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    data = tmp_path / "bin"
    data.mkdir()
    (data / "train.s1.en").write_bytes(b"premises")
    (data / "train.label.en").write_bytes(b"012")
    first = finetune_run_name(cfg, str(model), str(data))
    assert finetune_run_name(cfg, str(model), str(data)) == first  # unchanged setup: the same run resumes

    (data / "train.label.en").write_bytes(b"210")  # same size, other labels (a new rule, a new source)
    stat = (data / "train.label.en").stat()
    os.utime(data / "train.label.en", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    relabelled = finetune_run_name(cfg, str(model), str(data))
    assert relabelled != first

    (model / "model.safetensors").write_bytes(b"other weights")
    assert finetune_run_name(cfg, str(model), str(data)) not in {first, relabelled}

    # More epochs continue the same run.
    longer = load_config(
        REPO / "configs" / "tiny.yaml", {"experiment.workdir": str(tmp_path / "work"), "xnli.max_epochs": 99}
    )
    assert finetune_run_name(longer, str(model), str(data)) == finetune_run_name(cfg, str(model), str(data))


def test_pretraining_name_ignores_run_length_but_not_the_model():
    base = load_config(REPO / "configs" / "tiny.yaml")
    assert ray_run_name(load_config(REPO / "configs" / "tiny.yaml", {"train.max_epochs": 50})) == ray_run_name(base)
    assert ray_run_name(load_config(REPO / "configs" / "tiny.yaml", {"model.n_layers": 3})) != ray_run_name(base)
