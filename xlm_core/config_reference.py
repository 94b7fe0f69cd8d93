"""The config reference (every section and key with type, default and description) as Markdown.

Generated from the pydantic models, so the reference in docs/config-reference.md cannot drift from
the code (`scripts/update_readme.py`, checked by a test).
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel

from xlm_core.config import PipelineConfig

__all__ = ["reference_markdown"]


def reference_markdown() -> str:
    """The config reference (every section and key with type, default and description) as Markdown."""
    lines: list[str] = []
    for section, field in PipelineConfig.model_fields.items():
        model = field.annotation
        required = field.is_required()
        lines.append(f"### `{section}`{' (required)' if required else ''}")
        lines.append("")
        lines.append("| key | type | default | description |")
        lines.append("|---|---|---|---|")
        lines.extend(_reference_rows(model, prefix=""))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if not getattr(annotation, "__args__", None) else None
    text = text or str(annotation).replace("typing.", "").replace("xlm_core.config.", "")
    # Validators in Annotated[...] types print as `AfterValidator(func=<function ... at 0x...>)`: drop
    # them, so the reference is the same on every run.
    text = re.sub(
        r"Annotated\[(.*?), (?:AfterValidator|BeforeValidator)\(func=<function .*? at 0x[0-9a-f]+>\)\]", r"\1", text
    )
    return text.replace("|", "or")


def _reference_rows(model: Any, prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(_reference_rows(annotation, prefix=f"{prefix}{name}."))
            continue
        item = (getattr(annotation, "__args__", None) or [None])[0]
        if isinstance(item, type) and issubclass(item, BaseModel):
            rows.append(f"| `{prefix}{name}` | list | `[]` | {field.description} Each item: |")
            rows.extend(_reference_rows(item, prefix=f"{prefix}{name}[]."))
            continue
        if field.is_required():
            default = "required"
        elif field.default_factory is not None:
            default = f"`{json.dumps(to_json_default(field.default_factory()))}`"
        else:
            default = f"`{json.dumps(to_json_default(field.default))}`"
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{prefix}{name}` | {_type_name(annotation)} | {default} | {description} |")
    return rows


def to_json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple):
        return list(value)
    return value
