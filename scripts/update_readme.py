"""Regenerate the config reference in docs/config-reference.md from the pydantic models.

The generated tables sit between the two marker comments; everything else in the file is kept.
`--check` changes nothing and exits non-zero when the file is stale (tests/unit/test_config.py).
The name is historical: the reference used to live in README.md.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from xlm_core.config_reference import reference_markdown

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "config-reference.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def render(text: str) -> str:
    block = f"{START}\n{reference_markdown()}{END}"
    return re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)


if __name__ == "__main__":
    name = REFERENCE.relative_to(REFERENCE.parent.parent)
    current = REFERENCE.read_text(encoding="utf-8")
    if START not in current or END not in current:
        sys.exit(f"{name} lacks the markers {START} ... {END}; restore them around the reference")
    updated = render(current)
    if "--check" in sys.argv:
        sys.exit(0 if updated == current else f"{name} config reference is stale: run scripts/update_readme.py")
    REFERENCE.write_text(updated, encoding="utf-8")
