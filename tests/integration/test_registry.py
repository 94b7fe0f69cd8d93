"""The registered model: the transformers export with a pyfunc from code, no pickle, usable without the project.

A real MLflow store (SQLite), a real export of a small XLM model (`export_lm`), and `register_export` as
the export flow's log step calls it; the registered model is then loaded and run in a separate Python
process in which neither `xlm_core` nor `tasks` can be imported.
"""

from __future__ import annotations

import ast
import json
import string
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch
import yaml

from tests.support.tiny import tiny_arch
from xlm_core.config import PipelineConfig, load_config
from xlm_core.export import export_lm
from xlm_core.model import XLMWithLMHeadModel

REPO = Path(__file__).resolve().parents[2]
SPECIALS = ["<s>", "</s>", "<pad>", "<unk>", *(f"<special{i}>" for i in range(10))]
LETTERS = list(string.ascii_lowercase)
WORDS = SPECIALS + [c + "@@" for c in LETTERS] + [c for c in LETTERS] + ["th@@", "the", "is", "not", "le", "un"]
SENTENCES = [("the <special1> is not a b c .", "en"), ("le <special1> un x <special1> .", "fr")]

# Run with `python -I` from a directory outside the repository; the project's editable-install hook is
# removed too, so only public packages can be imported.
CLEAN_LOAD = textwrap.dedent(
    """
    import json, sys
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                        and "editable" not in getattr(f, "__module__", "").lower()]
    sys.path_hooks[:] = [h for h in sys.path_hooks if "editable" not in getattr(h, "__module__", "").lower()]
    sys.path[:] = [p for p in sys.path if p.rstrip("/") != sys.argv[3]]  # the venv may live in the repository
    for name in ("xlm_core", "tasks", "flows"):
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            raise SystemExit(f"{name} is importable: the check is not clean")

    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(sys.argv[1])
    model = mlflow.pyfunc.load_model(sys.argv[2])
    rows = json.loads(sys.argv[4])
    out = model.predict(pd.DataFrame(rows, columns=["text", "lang"]))
    print(json.dumps({
        "signature_inputs": [c["name"] for c in model.metadata.get_input_schema().to_dict()],
        "predictions": json.loads(out.to_json(orient="records")),
    }))
    """
)


def _config(tmp_path: Path, **overrides: object) -> PipelineConfig:
    return load_config(REPO / "configs" / "tiny.yaml", {"experiment.workdir": str(tmp_path / "{name}"), **overrides})


def _export(cfg: PipelineConfig, seed: int) -> tuple[Path, XLMWithLMHeadModel]:
    torch.manual_seed(seed)
    arch = tiny_arch(len(WORDS))
    model = XLMWithLMHeadModel(arch).eval()
    codes = cfg.workdir / "codes"
    codes.parent.mkdir(parents=True, exist_ok=True)
    codes.write_text("t h 50\nth e</w> 40\n", encoding="utf-8")
    path = export_lm(
        model,
        arch,
        cfg.workdir / "hf_export",
        words=WORDS,
        codes_path=codes,
        lang2id=cfg.lang2id,
        do_lowercase_and_remove_accent=True,
        causal=False,
    )
    return path, model


def _training_run(cfg: PipelineConfig) -> str:
    from tasks.tracking import client_for, ensure_experiment

    client = client_for(cfg)
    run = client.create_run(ensure_experiment(cfg), run_name="pretrain-test")
    client.set_terminated(run.info.run_id)  # the export flow runs after training finished
    return run.info.run_id


def _expected(model: XLMWithLMHeadModel, export_dir: Path, text: str, lang: str, lang2id: dict[str, int]) -> list:
    """Best non-special token per mask, computed with the project's own model from transformers' token ids."""
    from transformers import XLMTokenizer

    tokenizer = XLMTokenizer.from_pretrained(str(export_dir))
    ids = torch.tensor([tokenizer.encode(text, lang=lang)])
    with torch.no_grad():
        logits = model(ids, langs_BT=torch.full_like(ids, lang2id[lang]))[0]
    logits[:, : len(SPECIALS)] = float("-inf")
    masks = (ids[0] == tokenizer.mask_token_id).nonzero().flatten()
    return [tokenizer.convert_tokens_to_string([t]) for t in tokenizer.convert_ids_to_tokens(logits[masks].argmax(-1))]


def _load_clean(cfg: PipelineConfig, uri: str, rows: list[dict[str, str]], cwd: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-I", "-c", CLEAN_LOAD, cfg.tracking_uri, uri, str(REPO), json.dumps(rows)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "HOME": str(cwd)},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_registered_model_is_the_export_and_loads_without_the_project(tmp_path: Path) -> None:
    import mlflow

    from tasks.registry import DIGEST_TAG, register_export
    from tasks.tracking import client_for

    cfg = _config(tmp_path)
    export_dir, model = _export(cfg, seed=0)
    run_id = _training_run(cfg)
    start = time.monotonic()
    uri = register_export(cfg, str(export_dir), run_id)
    print(f"register_export: {time.monotonic() - start:.2f} s")
    assert uri == f"models:/{cfg.experiment.name}@best"

    client = client_for(cfg)
    version = client.get_model_version_by_alias(cfg.experiment.name, "best")
    assert version.run_id == run_id and version.tags[DIGEST_TAG]
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_logged_model(version.source.removeprefix("models:/")).artifact_location,
            dst_path=str(tmp_path / "downloaded"),
        )
    )
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert "artifacts/hf_export/model.safetensors" in files, files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".bin"))], files
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert mlmodel["signature"]["inputs"] and mlmodel["saved_input_example_info"]
    pyfunc = mlmodel["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "mlflow.pyfunc.loaders.code_model" and "python_model" not in pyfunc
    code = ast.parse((local / Path(pyfunc["model_code_path"]).name).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(code) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(code) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "typing", "mlflow", "pandas", "torch", "transformers"}, imported

    # The last two rows: one text in both languages, for the language embedding.
    rows = [{"text": text, "lang": lang} for text, lang in SENTENCES]
    rows += [{"text": SENTENCES[0][0], "lang": lang} for lang in ("en", "fr")]
    start = time.monotonic()
    loaded = _load_clean(cfg, uri, rows, tmp_path)
    print(f"clean load and predict: {time.monotonic() - start:.2f} s")
    assert loaded["signature_inputs"] == ["text", "lang"]
    predictions = loaded["predictions"]
    for row, (text, lang) in zip(predictions[:2], SENTENCES, strict=True):
        assert row["tokens"] == _expected(model, export_dir, text, lang, cfg.lang2id), (text, row)
        assert len(row["scores"]) == text.count("<special1>") and all(0 < s <= 1 for s in row["scores"])
        assert "<special1>" not in row["filled"]
    # The language column reaches the model (its language embedding): the same text scores differently.
    assert predictions[2]["scores"] != predictions[3]["scores"]


def test_unchanged_export_is_not_registered_again_and_a_new_one_moves_best(tmp_path: Path) -> None:
    from tasks.registry import register_export
    from tasks.tracking import client_for

    cfg = _config(tmp_path)
    name = cfg.experiment.name
    export_dir, _ = _export(cfg, seed=0)
    run_id = _training_run(cfg)
    client = client_for(cfg)
    assert register_export(cfg, str(export_dir), run_id) == f"models:/{name}@best"
    assert register_export(cfg, str(export_dir), run_id) == f"models:/{name}@best"
    assert [str(v.version) for v in client.search_model_versions(f"name='{name}'")] == ["1"]

    export_dir, _ = _export(cfg, seed=1)  # a new best checkpoint, exported to the same directory
    register_export(cfg, str(export_dir), run_id)
    assert str(client.get_model_version_by_alias(name, "best").version) == "2"


def test_empty_registered_model_name_disables_registration(tmp_path: Path) -> None:
    from tasks.registry import register_export

    cfg = _config(tmp_path)
    cfg.tracking.registered_model = ""  # as in YAML; an empty `-o` override reads as unset (null)
    export_dir, _ = _export(cfg, seed=0)
    assert register_export(cfg, str(export_dir), "unused-run-id") is None
