"""`xlm` on bad input: one line on stderr naming the file and the fix, exit status 2, no traceback;
`--debug` raises instead."""

from __future__ import annotations

import os
import string
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from xlm_cli.main import main
from xlm_core.checkpoint import CheckpointError, save_checkpoint
from xlm_core.config import ConfigError, load_config, to_dict
from xlm_core.model import XLMArchitecture, XLMWithLMHeadModel

TINY = REPO / "configs" / "tiny.yaml"
PIECES = [c + "@@" for c in string.ascii_lowercase] + list(string.ascii_lowercase)


def _checkpoint(directory: Path) -> Path:
    """A small but complete training checkpoint of the tiny config."""
    cfg = load_config(TINY)
    files = directory / "files"
    files.mkdir(parents=True)
    (files / "dict.txt").write_text("".join(f"{w} {100 - i}\n" for i, w in enumerate(PIECES)), encoding="utf-8")
    (files / "codes").write_text("t h 50\n", encoding="utf-8")
    arch = XLMArchitecture.from_config(cfg.model, vocab_size=14 + len(PIECES), n_langs=2)
    state = {"model": XLMWithLMHeadModel(arch).state_dict(), "arch": asdict(arch), "train_state": {"epoch": 1}}
    return save_checkpoint(directory / "ckpt", state, to_dict(cfg), [files / "dict.txt", files / "codes"])


def _fails(capsys, *argv: str) -> str:
    """Run `xlm argv`, check exit status 2 and return its single stderr line."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.rstrip("\n")


def test_config_errors(tmp_path, capsys):
    err = _fails(capsys, "config", str(tmp_path / "nope.yaml"))
    assert err.startswith(f"xlm config: config file not found: {tmp_path / 'nope.yaml'} (nor a preset in ")
    assert err.endswith("; check the path or the preset name")

    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: {name: x\ndata: [\n", encoding="utf-8")
    err = _fails(capsys, "config", str(bad))
    assert err.startswith(f"xlm config: {bad}:") and "not valid YAML" in err and err.endswith("fix the syntax there")

    twice = tmp_path / "twice.yaml"
    twice.write_text(TINY.read_text(encoding="utf-8") + "train: {max_epochs: 9}\n", encoding="utf-8")
    line = len(twice.read_text().splitlines())
    err = _fails(capsys, "config", str(twice))
    assert err.startswith(f"xlm config: {twice}:{line}: duplicate key train (first set on line ")

    err = _fails(capsys, "model", "info", str(TINY), "--set", "model.emb_dm=512")
    assert err == (
        "xlm model: unknown config key model.emb_dm (did you mean model.emb_dim?); see the config reference in "
        "README.md"
    )
    assert _fails(capsys, "config", str(TINY), "--set", "=3").startswith("xlm config: --set '=3': no key before '='")
    err = _fails(capsys, "config", str(TINY), "--set", "train.max_epochs=yes", "--set", "train.compile=1")
    assert err == (
        f"xlm config: invalid configuration in {TINY}: train.max_epochs: must be a whole number such as 3 "
        "(got 'yes') (set by an override); train.compile: must be true or false (got 1) (set by an override)"
    )
    err = _fails(capsys, "model", "info", str(TINY))
    assert err == "xlm model: the vocabulary size comes from the data: pass --vocab-size N (or set bpe.max_vocab)"


def test_run_refuses_a_bad_config_before_starting_anything(tmp_path, capsys):
    err = _fails(capsys, "run", str(TINY), "--set", "data.langs=[en, ../../x]")
    assert err.startswith(f"xlm run: invalid configuration in {TINY}: data.langs: '../../x' is not a language code")


def test_export_errors_name_the_checkpoint_file(tmp_path, capsys):
    out = str(tmp_path / "out")
    err = _fails(capsys, "export", str(tmp_path / "missing"), out)
    assert err.startswith(f"xlm export: {tmp_path / 'missing'}: no such checkpoint directory; pass a checkpoint")

    empty = tmp_path / "empty"
    empty.mkdir()
    assert _fails(capsys, "export", str(empty), out).startswith(
        f"xlm export: {empty} is not a training checkpoint: state.pt is missing; pass a checkpoint directory"
    )

    checkpoint = _checkpoint(tmp_path / "good")
    state = checkpoint / "state.pt"
    intact = state.read_bytes()
    state.write_bytes(intact[: len(intact) // 2])
    err = _fails(capsys, "export", str(checkpoint), out)
    assert err.startswith(f"xlm export: {state}: not a readable PyTorch checkpoint, truncated or corrupt (")

    torch.save({"weights": torch.zeros(2)}, state)  # some other program's file
    err = _fails(capsys, "export", str(checkpoint), out)
    assert err.startswith(f"xlm export: {state}: not a checkpoint of this pipeline (no model and arch entries)")

    torch.save({"model": {}, "arch": {}, "num_labels": 3}, state)
    err = _fails(capsys, "export", str(checkpoint), out)
    assert err.startswith(f"xlm export: {checkpoint} is an XNLI classifier checkpoint, not a pretraining one")

    saved = torch.load(_checkpoint(tmp_path / "other") / "state.pt", weights_only=True)
    saved["model"].popitem()  # one weight short
    torch.save(saved, state)
    err = _fails(capsys, "export", str(checkpoint), out)
    assert err.startswith(f"xlm export: {state}: its weights do not fit its architecture (")

    state.write_bytes(intact)
    (checkpoint / "config.json").write_text("{not json", encoding="utf-8")
    err = _fails(capsys, "export", str(checkpoint), out)
    assert err.startswith(f"xlm export: {checkpoint / 'config.json'}: not a readable JSON config (")
    assert not Path(out).exists()


def test_evaluate_errors_name_the_input_file(tmp_path, capsys):
    checkpoint = _checkpoint(tmp_path / "model")
    missing = tmp_path / "missing.txt"
    err = _fails(capsys, "evaluate", str(checkpoint), str(missing), "--lang", "en")
    assert err == f"xlm evaluate: {missing}: cannot read the text file (No such file or directory); check the path"

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    err = _fails(capsys, "evaluate", str(checkpoint), str(latin1), "--lang", "en")
    assert err == (
        f"xlm evaluate: {latin1}: not UTF-8 text (byte 3: invalid continuation byte); convert it, e.g. iconv -t UTF-8"
    )

    err = _fails(capsys, "evaluate", str(tmp_path / "no-model"), str(latin1), "--lang", "en")
    assert err.startswith(f"xlm evaluate: {tmp_path / 'no-model'} does not exist; pass an original XLM .pth")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        main(["--debug", "config", str(tmp_path / "nope.yaml")])
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        main(["export", "--debug", str(tmp_path / "missing"), str(tmp_path / "out")])


def test_one_line_from_the_installed_entry_point(tmp_path):
    """The real process: nothing but the one line on stderr, exit status 2; the traceback with --debug."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment:\n  name: x\n  name: y\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "xlm_cli.main", "config", str(bad)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert result.returncode == 2
    assert (
        result.stderr == f"xlm config: {bad}:3: duplicate key experiment.name (first set on line 2); keep one of them\n"
    )
    debug = subprocess.run([*command, "--debug"], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr


def test_import_of_a_damaged_pth_is_one_line(tmp_path, capsys):
    pth = tmp_path / "mlm_tiny.pth"
    torch.save({"model": {"w": torch.zeros(4)}, "params": {}}, pth)
    pth.write_bytes(pth.read_bytes()[:100])
    err = _fails(capsys, "import", str(pth), str(tmp_path / "out"), "--codes", str(tmp_path / "codes"))
    assert err.startswith(f"xlm import: {pth}: not a readable PyTorch file, truncated or corrupt (")
    assert err.endswith("); pass an intact original XLM .pth")
    pth.write_bytes(b"")
    err = _fails(capsys, "import", str(pth), str(tmp_path / "out"), "--trust-pickle")
    assert err == (
        f"xlm import: {pth}: not a readable PyTorch file, truncated or corrupt (Ran out of input); "
        "pass an intact original XLM .pth"
    )
