"""Typed experiment configuration: one YAML file per experiment, validated by pydantic.

The root model `PipelineConfig` and the loading functions live here; its sections are in
`xlm_core.config.sections` and are re-exported.

`load_config(path, overrides)` is the only function that reads configuration files.
Every model forbids unknown keys, so a typo fails with the dotted key named.
Model field names match transformers' `XLMConfig`, so export is a copy.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

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

__all__ = [
    "CheckpointConfig",
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


def _parse_value(raw: str) -> Any:
    """Parse an override value with YAML rules (numbers, booleans, lists, null)."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """`["model.emb_dim=512", ...]` -> `{"model.emb_dim": 512, ...}`."""
    result: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        result[key.strip()] = _parse_value(raw)
    return result


def _apply_override(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            raise ConfigError(f"override {dotted!r}: {prefix!r} is not a section")
        node = child
    node[parts[-1]] = value


def _format_errors(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for item in error.errors():
        dotted = ".".join(str(p) for p in item["loc"]) or "(root)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key; check its spelling against the config reference in README.md"
        elif item["type"] == "missing":
            message = "required key is missing"
        lines.append(f"  {dotted}: {message}")
    return "\n".join(lines)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {path}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A file path, or the name of a preset under configs/presets (with or without .yaml)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    preset = PRESET_DIR / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if preset.exists():
        return preset
    raise ConfigError(f"config file not found: {name_or_path} (nor a preset in {PRESET_DIR})")


def load_config(path: str | Path, overrides: dict[str, Any] | list[str] | None = None) -> PipelineConfig:
    """Read a YAML experiment file (or preset name), apply dotted overrides and validate."""
    source = resolve_config_path(path)
    tree = _read_yaml(source)
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    for key, value in (overrides or {}).items():
        _apply_override(tree, key, value)
    return config_from_dict(tree, source=str(source))


def config_from_dict(tree: dict[str, Any], *, source: str = "<dict>") -> PipelineConfig:
    """Validate a config tree; relative work and storage paths become absolute (against the cwd),
    so Ray workers, whose working directory differs, see the same files."""
    try:
        cfg = PipelineConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from e
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
