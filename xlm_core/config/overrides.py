"""Dotted overrides (`--set section.key=value`, or a flow's `overrides` parameter), typed by their field.

A value given as text is read by the type of the field it sets: a string field keeps the text as
written (`--set data.wikipedia.dump_date=20240301` is the string "20240301"), any other field reads
it as YAML (`3`, `true`, `null`, `[en, fr]`, `{corpus: GNOME, ...}`). Values that arrive typed (a
flow parameter from JSON) are kept as they are; validation then applies the usual strict types.
Keys are checked against the schema first, so a misspelt one is refused with the closest valid key.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel

from xlm_core.config.sections import ConfigError
from xlm_core.config.yaml_loader import parse_yaml_value

__all__ = ["apply_overrides", "check_key", "parse_override_items", "suggest_key", "typed_value", "valid_keys"]

_FORM = "write it section.key=value, e.g. --set model.emb_dim=512"


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _members(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of a union (`str | None` -> (str, NoneType)), else the annotation itself."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _takes_text(annotation: Any) -> bool:
    """Whether a field stores text as given: `str`, a Literal of strings, or a union with one."""
    for member in _members(annotation):
        if member is str:
            return True
        if typing.get_origin(member) is Literal and any(isinstance(arg, str) for arg in typing.get_args(member)):
            return True
    return False


def valid_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key of `model`, sections included (`model`, `model.emb_dim`, ...)."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        if _is_model(field.annotation):
            keys.extend(valid_keys(field.annotation, f"{dotted}."))
    return keys


def suggest_key(root: type[BaseModel], dotted: str) -> str:
    """` (did you mean x.y?)` for the closest valid key, or ''."""
    close = difflib.get_close_matches(dotted, valid_keys(root), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def check_key(root: type[BaseModel], dotted: str) -> Any:
    """The annotation of the field `dotted` sets; ConfigError for an unknown or malformed key.

    A key may go into a mapping field (`tokenization.per_lang_lowercase.fr`): the rest of the
    key is the mapping's key and the annotation returned is its value type.
    """
    parts = dotted.split(".")
    if not dotted or any(not part.strip() or part != part.strip() for part in parts):
        raise ConfigError(f"override key {dotted!r} is malformed; {_FORM}")
    model: type[BaseModel] = root
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            raise ConfigError(
                f"unknown config key {dotted}{suggest_key(root, dotted)}; see the config reference in README.md"
            )
        annotation = field.annotation
        rest = parts[depth + 1 :]
        if not rest:
            return annotation
        if _is_model(annotation):
            model = annotation
            continue
        mapping = next((m for m in _members(annotation) if typing.get_origin(m) is dict), None)
        if mapping is not None and len(rest) == 1:
            return typing.get_args(mapping)[1]
        raise ConfigError(f"override {dotted!r}: {'.'.join(parts[: depth + 1])!r} is not a section")
    raise AssertionError("unreachable")


def typed_value(annotation: Any, value: Any, dotted: str) -> Any:
    """`value` as the field would store it: text read by the field's type; typed values unchanged."""
    if not isinstance(value, str):
        return value
    try:
        parsed = parse_yaml_value(value)
    except yaml.YAMLError as error:
        if _takes_text(annotation):
            return value
        raise ConfigError(f"override {dotted}={value!r}: not a valid value ({error.__class__.__name__})") from error
    if _takes_text(annotation):
        if parsed is None and value.strip() and type(None) in _members(annotation):
            return None  # `null` or `~` on an optional string field; nothing after `=` is the empty string
        return parsed if isinstance(parsed, str) else value
    return parsed


def parse_override_items(root: type[BaseModel], items: list[str] | None) -> dict[str, Any]:
    """`["model.emb_dim=512", ...]` -> `{"model.emb_dim": 512, ...}`, each value typed by its field."""
    result: dict[str, Any] = {}
    for item in items or []:
        if not item.strip():
            raise ConfigError(f"--set {item!r}: empty override; {_FORM}")
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: no '=' in it; {_FORM}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set {item!r}: no key before '='; {_FORM}")
        result[key] = typed_value(check_key(root, key), raw, key)
    return result


def apply_overrides(root: type[BaseModel], tree: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Set each dotted key in the raw config tree, after checking it and typing its value."""
    for dotted, value in overrides.items():
        if not isinstance(dotted, str):
            raise ConfigError(f"override key {dotted!r} must be a dotted string such as model.emb_dim")
        value = typed_value(check_key(root, dotted), value, dotted)
        parts = dotted.split(".")
        node = tree
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {dotted!r}: {prefix!r} in the config file is not a mapping")
            node = child
        node[parts[-1]] = value
