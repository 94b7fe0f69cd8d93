"""The model commands of `xlm`: model info (meta device), export from an MLflow run, import, evaluate."""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from xlm_cli.main import main
from xlm_core.checkpoint import save_checkpoint
from xlm_core.config import load_config, to_dict
from xlm_core.export import load_lm
from xlm_core.model import XLMArchitecture, XLMWithLMHeadModel

REPO = Path(__file__).resolve().parents[2]
PIECES = [c + "@@" for c in string.ascii_lowercase] + list(string.ascii_lowercase) + ["th@@", "the", "."]
CODES = "t h 50\nth e</w> 40\n"


def run_xlm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "xlm_cli.main", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def make_checkpoint(directory: Path) -> tuple[Path, XLMWithLMHeadModel]:
    """A training checkpoint as `train.loop` writes it, for the tiny config and a tiny dictionary."""
    cfg = load_config(REPO / "configs" / "tiny.yaml")
    files = directory / "files"
    files.mkdir(parents=True)
    (files / "dict.txt").write_text("".join(f"{w} {1000 - i}\n" for i, w in enumerate(PIECES)), encoding="utf-8")
    (files / "codes").write_text(CODES, encoding="utf-8")
    arch = XLMArchitecture.from_config(cfg.model, vocab_size=14 + len(PIECES), n_langs=len(cfg.data.langs))
    torch.manual_seed(0)
    model = XLMWithLMHeadModel(arch).eval()
    state = {
        "model": model.state_dict(),
        "optimizer": {},
        "scheduler": {},
        "scaler": {},
        "train_state": {"update": 90, "epoch": 3, "best": {}, "last_metrics": {"valid_en_mlm_ppl": 30.0}},
        "ranks": [],
        "arch": asdict(arch),
    }
    checkpoint = save_checkpoint(
        directory / "epoch-00003", state, to_dict(cfg), extra_files=[files / "dict.txt", files / "codes"]
    )
    return checkpoint, model


def _peak_rss_mb(code: str, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    script = code + "; import resource; print('maxrss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split("maxrss_kb")[1].split()[0]) / 1024, proc


def test_model_info_counts_without_allocating() -> None:
    baseline, _ = _peak_rss_mb("import sys, xlm_cli.main, xlm_core.model, xlm_core.config")
    start = time.perf_counter()
    peak, proc = _peak_rss_mb(
        "import sys; from xlm_cli.main import main; main(sys.argv[1:])", "model", "info", "xlm-mlm-tlm-xnli15-1024"
    )
    elapsed = time.perf_counter() - start
    assert "249.1M" in proc.stdout
    # 249M fp32 weights would add ~1 GB over the imports; the meta device allocates none.
    assert peak - baseline < 250, (peak, baseline)
    assert elapsed < 15, elapsed  # interpreter + torch import dominate


def test_export_from_mlflow_run(tmp_path: Path) -> None:
    mlflow = pytest.importorskip("mlflow")
    checkpoint, model = make_checkpoint(tmp_path / "ckpt")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("export-test", artifact_location=(tmp_path / "mlartifacts").as_uri())
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(checkpoint), "best_checkpoint")
    client.set_terminated(run.info.run_id)

    assert main(["export", f"runs:/{run.info.run_id}", str(tmp_path / "export"), "--tracking-uri", uri]) == 0
    assert (
        main(["export", f"runs:/{run.info.run_id}/best_checkpoint", str(tmp_path / "export2"), "--tracking-uri", uri])
        == 0
    )

    loaded, _, meta = load_lm(tmp_path / "export")
    assert meta["lang2id"] == {"en": 0, "fr": 1} and meta["causal"] is False
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert (tmp_path / "export2" / "model.safetensors").read_bytes() == (
        tmp_path / "export" / "model.safetensors"
    ).read_bytes()


def test_import_and_evaluate_commands(tmp_path: Path) -> None:
    checkpoint, model = make_checkpoint(tmp_path / "ckpt")
    words = ["<s>", "</s>", "<pad>", "<unk>", *(f"<special{i}>" for i in range(10)), *PIECES]
    pth = tmp_path / "mlm_tiny.pth"
    params = {
        **{k: v for k, v in model.arch.to_dict().items() if k in ("emb_dim", "n_layers", "n_heads", "dropout")},
        "attention_dropout": 0.1,
        "gelu_activation": True,
        "n_langs": 2,
        "lang2id": {"en": 0, "fr": 1},
        "clm_steps": [],
        "mlm_steps": [("en", None)],
    }
    state = {f"module.{k.removeprefix('transformer.')}": v for k, v in model.state_dict().items()}
    torch.save({"model": state, "params": params, "dico_id2word": dict(enumerate(words))}, pth)

    imported = run_xlm("import", str(pth), str(tmp_path / "imported"), "--codes", str(checkpoint / "codes"))
    assert imported.returncode == 0, imported.stderr
    assert json.loads((tmp_path / "imported" / "config.json").read_text())["causal"] is False
    refused = run_xlm("import", str(pth), str(tmp_path / "no-codes"))
    assert refused.returncode == 2 and "--codes" in refused.stderr

    text = tmp_path / "text.en"
    text.write_text("The cat sat on the mat.\nHello world.\n", encoding="utf-8")
    evaluated = run_xlm("evaluate", str(checkpoint), str(text), "--lang", "en", "--objective", "clm")
    assert evaluated.returncode == 0, evaluated.stderr
    lines = dict(line.split(": ", 1) for line in evaluated.stdout.splitlines() if not line.startswith("["))
    assert float(lines["perplexity"]) > 1.0 and 0.0 <= float(lines["accuracy"]) <= 100.0
    # `</s> the cat sat on the mat . </s>` with `cat sat mat` split into letters by these codes.
    assert int(lines["predicted_tokens"]) > 10
