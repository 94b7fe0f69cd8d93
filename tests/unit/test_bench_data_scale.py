"""bench/data_scale.py: the resampled dump is well-formed and distinct, and the exponent is a log-log slope."""

from __future__ import annotations

import bz2
import importlib.util
import re
from pathlib import Path

import pytest

from xlm_core.data.wikipedia import check_dump

_PATH = Path(__file__).resolve().parents[2] / "bench" / "data_scale.py"
_SPEC = importlib.util.spec_from_file_location("bench_data_scale", _PATH)
data_scale = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(data_scale)

HEADER = '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11" xml:lang="en">\n'


def _page(title: str, text: str) -> str:
    return (
        f"  <page>\n    <title>{title}</title>\n    <ns>0</ns>\n    <id>11</id>\n    <revision>\n"
        f'      <id>100011</id>\n      <text bytes="1" xml:space="preserve">{text}</text>\n    </revision>\n  </page>\n'
    )


PAGES = [
    _page(
        "Ls",
        "'''ls''' lists directory contents.\n\n== Description ==\n\n"
        "The program lists files in the directory. It sorts them by name. Hidden files are skipped unless asked.\n\n"
        "{| class=&quot;wikitable&quot;\n| '''-a''' || all\n|}",
    ),
    _page(
        "Cp",
        "'''cp''' copies files.\n\nThe command copies a source file to a destination. Existing files are "
        "overwritten without a prompt. Directories need the recursive option.",
    ),
]


def test_write_dump_is_well_formed_and_distinct(tmp_path: Path) -> None:
    out = tmp_path / "dump.xml.bz2"
    written = data_scale.write_dump(HEADER, PAGES, out, 20_000, seed=0)
    xml = bz2.decompress(out.read_bytes()).decode("utf-8")
    assert written == len(xml.encode("utf-8")) >= 20_000
    assert check_dump(out).pages == xml.count("<page>")
    titles = re.findall(r"<title>(.*?)</title>", xml)
    assert len(titles) == len(set(titles)) > 10
    prose = [line for line in xml.split("\n") if line.startswith("The ") or line.startswith("Existing ")]
    assert len(set(prose)) > 0.9 * len(prose)  # rebuilt paragraphs rarely repeat
    assert "{| class=&quot;wikitable&quot;" in xml  # markup lines kept as they are


def test_write_dump_is_deterministic(tmp_path: Path) -> None:
    data_scale.write_dump(HEADER, PAGES, tmp_path / "a.bz2", 5_000, seed=3)
    data_scale.write_dump(HEADER, PAGES, tmp_path / "b.bz2", 5_000, seed=3)
    assert bz2.decompress((tmp_path / "a.bz2").read_bytes()) == bz2.decompress((tmp_path / "b.bz2").read_bytes())


def test_slope_is_the_log_log_exponent() -> None:
    sizes = [32.0, 128.0, 512.0]
    assert data_scale.slope(sizes, [2 * s for s in sizes]) == pytest.approx(1.0)
    assert data_scale.slope(sizes, [s**1.5 for s in sizes]) == pytest.approx(1.5)
