"""A Wikipedia dump mirror of three languages from real text: English and French from the pinned man
pages (as the demo mirror builds them), German from the German segments of the pinned gettext catalogs
(the pinned sources have no German man pages), written as man pages and converted the same way."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

from xlm_core.data.demo_catalogs import catalog_pairs
from xlm_core.data.demo_mirror import build_wikipedia_dump

__all__ = ["DATE", "three_language_mirror"]

DATE = "20240101"


def _german_man_tree(root: Path, pages: int, paragraphs: int) -> Path:
    """`root/de/man7/seite<i>.7.gz`: man(7) pages whose lead and paragraphs are real German segments."""
    segments = list(
        dict.fromkeys(de for _, de in catalog_pairs("de") if len(de.split()) >= 6 and not set(de) & set("%{}<>\\"))
    )
    needed = pages * (paragraphs + 1)
    assert len(segments) >= needed, f"the pinned catalogs give {len(segments)} German segments, {needed} needed"
    folder = root / "de" / "man7"
    folder.mkdir(parents=True, exist_ok=True)
    for page in range(pages):
        lead, *body = segments[page * (paragraphs + 1) : (page + 1) * (paragraphs + 1)]
        roff = f'.TH SEITE{page} 7 2024-01-01 "Demo" "Handbuch"\n.SH NAME\nseite{page} \\- {lead}\n'
        roff += ".SH BESCHREIBUNG\n" + "\n.PP\n".join(body) + "\n"
        (folder / f"seite{page}.7.gz").write_bytes(gzip.compress(roff.encode("utf-8"), mtime=0))
    return root


def three_language_mirror(out_root: Path, *, max_pages: int) -> str:
    """Dumps of en, fr and de under `out_root`, laid out as dumps.wikimedia.org; returns the base URL."""
    out_root = Path(out_root)
    build_wikipedia_dump("en", DATE, out_root, max_pages=max_pages, prefer_langs=["fr"])
    build_wikipedia_dump("fr", DATE, out_root, max_pages=max_pages, prefer_langs=["en"])
    with tempfile.TemporaryDirectory() as tree:
        man_root = _german_man_tree(Path(tree), max_pages, paragraphs=12)
        build_wikipedia_dump("de", DATE, out_root, max_pages=max_pages, prefer_langs=[], man_root=man_root)
    return out_root.as_uri()
