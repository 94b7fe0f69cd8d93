"""Regenerate the config reference section of README.md from the pydantic models."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from xlm_core.config_reference import reference_markdown

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def render(text: str) -> str:
    block = f"{START}\n{reference_markdown()}{END}"
    return re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)


if __name__ == "__main__":
    current = README.read_text(encoding="utf-8")
    updated = render(current)
    if "--check" in sys.argv:
        sys.exit(0 if updated == current else "README.md config reference is stale: run scripts/update_readme.py")
    README.write_text(updated, encoding="utf-8")
