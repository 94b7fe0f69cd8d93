"""The model registry entry of a training run: its transformers export, served by a pyfunc from code.

The registered model holds the export directory (config.json, model.safetensors, vocab.json,
merges.txt, ...) as an artifact and `xlm_core/export/pyfunc_fill_mask.py` as its code: it loads with
`mlflow.pyfunc.load_model("models:/<name>@best")` wherever mlflow, torch, transformers and sacremoses
are installed, without this project, and nothing is unpickled. It has a signature (`text`, `lang` in;
`filled`, `tokens`, `scores` out) and an input example.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import types
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import Array

from tasks.tracking import client_for
from xlm_core.config import PipelineConfig
from xlm_core.stage_cache import code_digest, content_digest

__all__ = ["ALIAS", "CODE_TAG", "DIGEST_TAG", "MODEL_SIGNATURE", "input_example", "register_export", "registered_name"]

logger = logging.getLogger(__name__)

ALIAS = "best"
DIGEST_TAG = "xlm.export_digest"  # model version tag: content digest of the export it holds
CODE_TAG = "xlm.serving_code_digest"  # model version tag: digest of its pyfunc code and of this module
_EXPORT_ARTIFACT = "hf_export"  # the artifacts key the pyfunc code reads (EXPORT_ARTIFACT there)
_CODE_MODULE = "xlm_core.export.pyfunc_fill_mask"

MODEL_SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(DataType.string, "text"), ColSpec(DataType.string, "lang")]),
    outputs=Schema(
        [
            ColSpec(DataType.string, "filled"),
            ColSpec(Array(DataType.string), "tokens"),
            ColSpec(Array(DataType.double), "scores"),
        ]
    ),
)
_EXAMPLES = {
    "en": "The <special1> is not a directory.",
    "fr": "Le <special1> n'est pas un dossier.",
}
# What transformers' XLMTokenizer imports for a language besides sacremoses.
_SEGMENTER_PACKAGES = {"zh": "rjieba", "th": "pythainlp", "ja": "Mykytea"}


def registered_name(cfg: PipelineConfig) -> str | None:
    """The registry name of the config's model (`tracking.registered_model`, else the experiment name);
    None when registration is disabled (an empty name)."""
    name = cfg.experiment.name if cfg.tracking.registered_model is None else cfg.tracking.registered_model
    return name or None


@contextlib.contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API (`Model.log` uses it) for one block, without leaving the process-wide
    tracking URI (and the MLFLOW_TRACKING_URI variable it sets) pointing at this run's store."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")  # set_tracking_uri mirrors the URI into this variable
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # None restores MLflow's default and unsets the variable


def _save_pyfunc(validate_serving_input: bool = True, **kwargs: Any) -> None:
    mlflow.pyfunc.save_model(**kwargs)


# `Model.log` loads the saved model and runs it on the input example unless told
# `validate_serving_input=False`, a keyword `mlflow.pyfunc.save_model` refuses: this flavor drops it.
# That would load the export (GBs for a large model) a second time, right after verify_export loaded it
# in transformers; tests/integration/test_registry.py loads and runs the registered model instead, in a
# process where this project cannot be imported.
_PYFUNC_WITHOUT_RELOAD = types.SimpleNamespace(__name__=mlflow.pyfunc.__name__, save_model=_save_pyfunc)


def _requirement(package: str) -> str:
    try:
        return f"{package}=={version(package).split('+')[0]}"
    except PackageNotFoundError:
        return package


def _requirements(langs: list[str]) -> list[str]:
    packages = ["mlflow", "torch", "transformers", "sacremoses", "pandas"]
    packages += sorted({_SEGMENTER_PACKAGES[lang] for lang in langs if lang in _SEGMENTER_PACKAGES})
    return [_requirement(package) for package in packages]


def input_example(langs: list[str]) -> pd.DataFrame:
    """One masked sentence per model language that has one here, else an English one as the first language."""
    rows = [{"text": _EXAMPLES[lang], "lang": lang} for lang in langs if lang in _EXAMPLES]
    return pd.DataFrame(rows or [{"text": _EXAMPLES["en"], "lang": langs[0]}])


def _code_path() -> str:
    spec = importlib.util.find_spec(_CODE_MODULE)
    if spec is None or not spec.origin:
        raise RuntimeError(f"{_CODE_MODULE} is missing: reinstall the project (pip install -e .)")
    return spec.origin


def _current(cfg: PipelineConfig, name: str) -> Any:
    try:
        return client_for(cfg).get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return None


def register_export(cfg: PipelineConfig, export_dir: str, run_id: str) -> str | None:
    """Register the export `export_dir` as the model of the training run `run_id`, alias `best`.

    An export already registered for this run (same content, same serving code) is not registered
    again. Returns `models:/<name>@best`, or None when registration is disabled
    (`tracking.registered_model: ""`).
    """
    name = registered_name(cfg)
    if name is None:
        return None
    uri = f"models:/{name}@{ALIAS}"
    tags = {DIGEST_TAG: content_digest(Path(export_dir), cfg.workdir), CODE_TAG: code_digest((_CODE_MODULE, __name__))}
    current = _current(cfg, name)
    if current is not None and current.run_id == run_id and all(current.tags.get(k) == v for k, v in tags.items()):
        logger.info("%s (version %s) already holds this export of run %s", uri, current.version, run_id)
        return uri
    with _tracking_uri(cfg.tracking_uri):
        info = Model.log(
            None,
            name="model",
            flavor=_PYFUNC_WITHOUT_RELOAD,
            validate_serving_input=False,
            run_id=run_id,
            python_model=_code_path(),
            artifacts={_EXPORT_ARTIFACT: str(export_dir)},
            signature=MODEL_SIGNATURE,
            input_example=input_example(list(cfg.data.langs)),
            pip_requirements=_requirements(list(cfg.data.langs)),
            registered_model_name=name,
        )
    client = client_for(cfg)
    model_version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(name, model_version, key, value)
    client.set_registered_model_alias(name, ALIAS, model_version)
    logger.info("registered %s version %s (run %s) as %s", name, model_version, run_id, uri)
    return uri
