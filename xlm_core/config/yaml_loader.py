"""The YAML dialect of experiment files: safe, strict about duplicate keys and about booleans.

PyYAML's SafeLoader follows YAML 1.1, where a repeated key silently replaces the first, `yes`, `no`,
`on` and `off` are booleans and `1e-4` is a string. Experiment files are read with YAML 1.2's rules
instead: only `true`/`false` are booleans (so `no`, Norwegian, stays a string), `1e-4` is a float,
and a key repeated in one mapping is an error naming the file, the line and the dotted key.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from xlm_core.config.sections import ConfigError

__all__ = ["load_yaml", "parse_yaml_value"]

_BOOL = "tag:yaml.org,2002:bool"
_FLOAT = "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and exponent floats; duplicate keys are found by `_refuse_duplicates`."""


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
# YAML 1.1 needs a dot and a signed exponent (`1.0e-4`); 1.2 also reads `1e-4`, `1E5`, `2.5e3`.
_ConfigLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _where(source: str, mark: yaml.Mark | None) -> str:
    return f"{source}:{mark.line + 1}" if mark is not None else source


def _refuse_duplicates(node: yaml.Node, source: str, prefix: str = "", seen: set[int] | None = None) -> None:
    """Walk the composed document; a key seen twice in one mapping is a ConfigError."""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias of a node already checked (or a recursive one)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:  # `<<: *anchor` merges are YAML's way to repeat on purpose
                continue
            key = (key_node.tag, str(key_node.value))
            dotted = f"{prefix}{key_node.value}"
            if key in first_line:
                raise ConfigError(
                    f"{_where(source, key_node.start_mark)}: duplicate key {dotted} (first set on line "
                    f"{first_line[key]}); keep one of them"
                )
            first_line[key] = key_node.start_mark.line + 1
            _refuse_duplicates(value_node, source, f"{dotted}.", seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicates(item, source, f"{prefix}{index}.", seen)


def _load(text: str, source: str) -> Any:
    loader = _ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicates(node, source)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_yaml(text: str, source: str) -> Any:
    """Parse an experiment file's text; errors are one-line ConfigErrors naming `source` and the line."""
    try:
        return _load(text, source)
    except yaml.MarkedYAMLError as error:
        problem = " ".join(str(part) for part in (error.context, error.problem) if part)
        raise ConfigError(
            f"{_where(source, error.problem_mark)}: not valid YAML ({problem or 'syntax error'}); fix the syntax there"
        ) from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML ({error}); fix the syntax") from error


def parse_yaml_value(raw: str) -> Any:
    """One override value with the same rules (numbers, true/false, null, flow lists and mappings).

    Raises yaml.YAMLError when `raw` is not valid YAML.
    """
    return _load(raw, "<override>")
