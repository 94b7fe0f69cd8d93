"""Typed experiment configuration: one YAML file per experiment, validated by pydantic.

The root model `PipelineConfig` and the loading functions live here; its sections are in
`xlm_core.config.sections` and are re-exported.

`load_config(path, overrides)` is the only function that reads configuration files
(`xlm_core.config.yaml_loader`: a repeated key is an error, only true/false are booleans).
Every model forbids unknown keys, so a typo fails with the dotted key named, and types are strict:
an int field takes whole numbers only, a bool field true/false only. Overrides are typed by the
field they set (`xlm_core.config.overrides`).
Model field names match transformers' `XLMConfig`, so export is a copy.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from xlm_core.config.cleaning import CleaningConfig, resolve_filters
from xlm_core.config.limits import position_limit_problems
from xlm_core.config.overrides import apply_overrides, parse_override_items, suggest_key
from xlm_core.config.sections import (
    BPEConfig,
    CheckpointConfig,
    ConfigError,
    DataConfig,
    ExperimentConfig,
    ExportConfig,
    ModelConfig,
    ObjectivesConfig,
    OptimConfig,
    OpusCorpus,
    ScalingConfig,
    TokenizationConfig,
    TrackingConfig,
    TrainConfig,
    WikipediaConfig,
    XNLIConfig,
    _Section,
    _split_lang_pair,
)
from xlm_core.config.yaml_loader import load_yaml

__all__ = [
    "CheckpointConfig",
    "CleaningConfig",
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "ExportConfig",
    "ModelConfig",
    "ObjectivesConfig",
    "OpusCorpus",
    "OptimConfig",
    "PipelineConfig",
    "ScalingConfig",
    "TokenizationConfig",
    "BPEConfig",
    "TrackingConfig",
    "TrainConfig",
    "WikipediaConfig",
    "XNLIConfig",
    "config_hash",
    "load_config",
    "parse_overrides",
    "to_dict",
]

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "presets"


class PipelineConfig(_Section):
    experiment: ExperimentConfig
    data: DataConfig
    tokenization: TokenizationConfig = Field(default_factory=TokenizationConfig)
    bpe: BPEConfig = Field(default_factory=BPEConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    objectives: ObjectivesConfig
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    scaling: ScalingConfig = Field(default_factory=ScalingConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    xnli: XNLIConfig = Field(default_factory=XNLIConfig)
    cleaning: CleaningConfig = Field(default_factory=CleaningConfig)

    @model_validator(mode="after")
    def _check_cross(self) -> PipelineConfig:
        langs = set(self.data.langs)
        pairs = set(self.data.pairs)
        for key in ("clm_steps", "mlm_steps"):
            for step in getattr(self.objectives, key):
                l1, l2 = _split_lang_pair(step)
                if l2 is None:
                    if l1 not in self.data.mono:
                        raise ValueError(f"objectives.{key}: {step!r} has no monolingual data (data.mono_langs)")
                elif "-".join(sorted([l1, l2])) not in pairs:
                    raise ValueError(f"objectives.{key}: pair {step!r} has no parallel corpus in data.parallel")
                elif l1 not in langs or l2 not in langs:
                    raise ValueError(f"objectives.{key}: {step!r} uses a language outside data.langs")
        for metric in self.train.validation_metrics:
            if not metric.lstrip("_").startswith(("valid_", "test_")):
                raise ValueError(f"train.validation_metrics: {metric!r} must name a valid_/test_ metric")
        return self

    @model_validator(mode="after")
    def _check_cleaning(self) -> PipelineConfig:
        for lang in self.cleaning.langs:
            if lang not in self.data.mono:
                raise ValueError(
                    f"cleaning.langs.{lang}: {lang!r} has no Wikipedia data (data.langs / data.mono_langs); "
                    "remove the entry or fix the language"
                )
        corpora = {item.corpus for item in self.data.parallel}
        for name in sorted(corpora):  # cleaning.parallel, with each configured corpus's kind
            resolve_filters(self.cleaning, corpus=name)
        for name in self.cleaning.corpora:
            if name not in corpora:
                raise ValueError(
                    f"cleaning.corpora.{name}: no corpus {name!r} in data.parallel (names: {sorted(corpora)}); "
                    "remove the entry or fix its name"
                )
        return self

    @model_validator(mode="after")
    def _check_positions(self) -> PipelineConfig:
        """Every length the config allows must fit the position table (one error lists them all)."""
        problems = position_limit_problems(self.model, self.objectives, self.xnli)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # Derived values used across stages.
    @property
    def lang2id(self) -> dict[str, int]:
        """Alphabetical language ids, as the original XLM assigns them."""
        return {lang: i for i, lang in enumerate(sorted(self.data.langs))}

    @property
    def causal(self) -> bool:
        if self.model.causal is not None:
            return self.model.causal
        return bool(self.objectives.clm_steps) and not self.objectives.mlm_steps

    @property
    def workdir(self) -> Path:
        return Path(self.experiment.workdir.format(name=self.experiment.name)).expanduser().resolve()

    @property
    def tracking_uri(self) -> str:
        if self.tracking.tracking_uri:
            return self.tracking.tracking_uri
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        return f"sqlite:///{self.workdir / 'mlflow.db'}"

    @property
    def mlflow_experiment(self) -> str:
        return self.tracking.experiment or self.experiment.name


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """`["model.emb_dim=512", ...]` -> `{"model.emb_dim": 512, ...}`: keys checked against the schema
    (a misspelt one gets the closest valid key), each value read by its field's type."""
    return parse_override_items(PipelineConfig, items)


def _clean_message(message: str) -> str:
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _format_errors(error: ValidationError, source: str, overridden: set[str] | frozenset[str] = frozenset()) -> str:
    """One line: `invalid configuration in FILE: key: problem; key: problem`."""
    problems = []
    for item in error.errors():
        dotted = ".".join(str(p) for p in item["loc"])
        message = _clean_message(item["msg"])
        if item["type"] == "extra_forbidden":
            hint = suggest_key(PipelineConfig, dotted) if not any(isinstance(p, int) for p in item["loc"]) else ""
            message = f"unknown key{hint}; check its spelling against the config reference in README.md"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif item["type"] == "bool_type":
            message = f"must be true or false (got {item['input']!r})"
        elif item["type"] in ("int_type", "int_from_float"):
            message = f"must be a whole number such as 3 (got {item['input']!r})"
        elif item["type"].endswith(("_type", "_parsing")):
            message = f"{message} (got {item['input']!r})"
        if any(dotted == key or dotted.startswith(f"{key}.") for key in overridden):
            message += " (set by an override)"
        problems.append(message if not dotted or message.startswith(dotted) else f"{dotted}: {message}")
    return f"invalid configuration in {source}: " + "; ".join(problems)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {path}; check the path or name a preset in {PRESET_DIR}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror or e}); check the path") from e
    data = load_yaml(text, str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (experiment:, data:, ...)")
    return data


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A file path, or the name of a preset under configs/presets (with or without .yaml)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    preset = PRESET_DIR / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if preset.exists():
        return preset
    raise ConfigError(
        f"config file not found: {name_or_path} (nor a preset in {PRESET_DIR}); check the path or the preset name"
    )


def load_config(path: str | Path, overrides: dict[str, Any] | list[str] | None = None) -> PipelineConfig:
    """Read a YAML experiment file (or preset name), apply dotted overrides and validate."""
    source = resolve_config_path(path)
    tree = _read_yaml(source)
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    apply_overrides(PipelineConfig, tree, overrides or {})
    return config_from_dict(tree, source=str(source), overridden=set(overrides or {}))


def config_from_dict(
    tree: dict[str, Any], *, source: str = "<dict>", overridden: set[str] | None = None
) -> PipelineConfig:
    """Validate a config tree; relative work and storage paths become absolute (against the cwd),
    so Ray workers, whose working directory differs, see the same files."""
    try:
        cfg = PipelineConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source, overridden or set())) from e
    cfg.experiment.workdir = str(cfg.workdir)
    storage = cfg.checkpoint.storage_path
    if storage and "://" not in storage:
        cfg.checkpoint.storage_path = str(Path(storage).expanduser().resolve())
    return cfg


def to_dict(config: BaseModel) -> dict[str, Any]:
    """JSON-compatible dict of a config (or one of its sections)."""
    return config.model_dump(mode="json")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"model": {"emb_dim": 8}}` -> `{"model.emb_dim": 8}`; lists are kept as JSON strings."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        elif isinstance(value, (list, tuple, dict)):
            flat[dotted] = json.dumps(value)
        else:
            flat[dotted] = value
    return flat


def config_hash(section: BaseModel | dict[str, Any]) -> str:
    """Stable short hash of a config section (cache keys)."""
    data = section if isinstance(section, dict) else to_dict(section)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
