"""Real human-written test text from the pinned demo sources (`xlm_core.data.demo_sources`), the same on
every machine: man page sources of the Debian `manpages`/`manpages-dev` (en) and `manpages-fr` (fr)
packages, and the gettext catalogs of the pinned wheels.

Too little text is a hard failure (AssertionError), never a skip: the sources are pinned, so a
shortfall means the lock or these helpers changed, not the machine.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from xlm_core.data.demo_catalogs import catalog_pairs
from xlm_core.data.demo_sources import ensure_demo_sources

__all__ = ["catalog_lines", "man_lines", "man_pages", "man_source_lines"]

_TROFF = re.compile(r"\\f[A-Z]|\\f\(..|\\s[-+]?\d|\\[&|^]|\\\(..|\\\*.")


def man_pages(lang: str) -> list[Path]:
    """The man page files of `lang` (en or fr) in path order (`man1/` first), symlinks left out."""
    root = ensure_demo_sources().man_root
    base = root if lang == "en" else root / lang
    pages = [p for p in sorted(base.glob("man*/*.gz")) if not p.is_symlink()]
    assert pages, f"no pinned man pages for {lang!r} under {base}"
    return pages


def _short(what: str, found: int, wanted: int) -> AssertionError:
    return AssertionError(
        f"the pinned demo sources give {found} {what}, the test needs {wanted}: "
        "see the lock in xlm_core/data/demo_sources.py"
    )


def man_lines(lang: str, n: int, *, skip: int = 0, min_words: int = 4) -> list[str]:
    """Prose lines of the man page sources (roff requests dropped, font/size escapes removed,
    whitespace collapsed) with at least `min_words` words: lines `skip` to `skip + n`."""
    out: list[str] = []
    for path in man_pages(lang):
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith((".", "'")):
                    continue
                line = " ".join(_TROFF.sub("", line).replace("\\-", "-").replace("\\e", "\\").split())
                if len(line.split()) >= min_words:
                    out.append(line)
        if len(out) >= n + skip:
            return out[skip : skip + n]
    raise _short(f"{lang} man page lines of {min_words}+ words", len(out), n + skip)


def man_source_lines(max_lines: int, *, min_lines: int) -> bytes:
    """Up to `max_lines` non-blank English man source lines, roff markup kept except request lines:
    `zcat man*/*.gz | grep -v '^\\.'` over the pinned pages, as UTF-8 bytes, one line each."""
    lines: list[bytes] = []
    for path in man_pages("en"):
        with gzip.open(path, "rb") as handle:
            lines.extend(line for line in handle if not line.startswith(b".") and line.strip())
        if len(lines) >= max_lines:
            break
    if len(lines) < min_lines:
        raise _short("English man source lines", len(lines), min_lines)
    text = b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines[:max_lines])
    return text.decode("utf-8", "replace").encode("utf-8")


def catalog_lines(lang: str, n: int, *, skip: int = 0) -> list[str]:
    """Distinct real segments of `lang` from the pinned gettext catalogs (en: the English msgids of the
    French catalogs), in `catalog_pairs` order: segments `skip` to `skip + n`."""
    pairs = catalog_pairs("fr" if lang == "en" else lang)
    lines = list(dict.fromkeys(english if lang == "en" else other for english, other in pairs))
    if len(lines) < skip + n:
        raise _short(f"distinct {lang} catalog segments", len(lines), skip + n)
    return lines[skip : skip + n]
