"""Decompression caps: finite in every shipped config, a ratio guard against zip bombs, and over-long lines
dropped and counted (with their pair) instead of buffered, at close to zipfile's own speed."""

from __future__ import annotations

import tarfile
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from tests.support.fixtures import XNLI_DEV, XNLI_TEST, write_zip, xnli_tsv
from xlm_core.config import load_config
from xlm_core.config.transfer import UnpackConfig
from xlm_core.data.archives import RATIO_FLOOR, ArchiveSizeError, extract_tar, extract_zip, read_zip_member
from xlm_core.data.nli import read_xnli
from xlm_core.data.opus import read_moses_zip

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20
DEFAULTS = UnpackConfig()
SHIPPED_CAPS = {
    "max_member_bytes": DEFAULTS.max_opus_member_bytes,
    "max_ratio": DEFAULTS.max_ratio,
    "max_line_bytes": DEFAULTS.max_line_bytes,
}


def _bomb(path: Path, *, mib: int, members: tuple[str, ...] = ("B.en-fr.en", "B.en-fr.fr")) -> Path:
    """A zip whose members are `mib` MiB of one newline-free line each, written without holding it in memory."""
    block = b"a" * MiB
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in members:
            with archive.open(name, "w") as member:
                for _ in range(mib):
                    member.write(block)
    return path


@pytest.mark.parametrize("config", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_has_finite_limits_that_real_corpora_pass(config):
    cfg = load_config(config)
    unpack, download = cfg.data.unpack, cfg.data.download
    assert unpack.max_opus_member_bytes >= 4 * 1.4e9  # MultiUN en-fr: ~1.4 GB a side
    assert unpack.max_wikipedia_xml_bytes >= 2 * 100e9  # enwiki pages-articles: ~100 GB of XML
    assert unpack.max_nli_member_bytes >= 2 * 0.5e9  # the MultiNLI / XNLI-MT members
    assert 10 < unpack.max_ratio < 1000 and unpack.max_line_bytes <= 16 * MiB
    assert download.deadline_s <= 24 * 3600 and download.min_bytes_per_s > 0
    assert download.task_timeout_s > download.deadline_s


def test_a_newline_free_bomb_stops_at_the_ratio_guard_in_bounded_time_and_memory(tmp_path):
    bomb = _bomb(tmp_path / "bomb.zip", mib=150)
    assert bomb.stat().st_size < 1 * MiB  # ~150 KB of zip for 2 x 150 MiB of text
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ArchiveSizeError, match=r"bomb\.zip: member 'B\.en-fr\.\w+' .* times its .*max_ratio"):
            read_moses_zip(bomb, "en-fr", tmp_path / "en", tmp_path / "fr", **SHIPPED_CAPS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 10
    assert peak < 3 * DEFAULTS.max_line_bytes + 8 * MiB, peak  # the line is never buffered whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.zip"]  # no output, no temporary


def test_an_over_long_line_is_dropped_and_counted_without_buffering(tmp_path):
    bomb = _bomb(tmp_path / "long.zip", mib=64, members=("L.en-fr.en",))
    with zipfile.ZipFile(bomb) as archive:
        info = archive.getinfo("L.en-fr.en")
        tracemalloc.start()
        started = time.monotonic()
        try:
            reader = read_zip_member(archive, info, path=bomb, max_member_bytes=100 * MiB, max_line_bytes=MiB)
            with reader:
                assert list(reader) == []
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert reader.dropped_lines == 1 and reader.longest_dropped == 64 * MiB
    assert peak < 4 * MiB, peak
    assert time.monotonic() - started < 10


def test_a_pair_with_an_over_long_side_is_left_out_and_the_sides_stay_aligned(tmp_path):
    long_segment = "x" * 5000
    zip_path = write_zip(
        tmp_path / "c.zip",
        {
            "C.en-fr.en": f"one\n{long_segment}\nthree\nfour\n",
            "C.en-fr.fr": f"un\ndeux\ntrois\n{long_segment}",  # the last line without its newline
        },
    )
    stats: dict[str, int] = {}
    count = read_moses_zip(
        zip_path, "en-fr", tmp_path / "en", tmp_path / "fr", max_line_bytes=4096, stats=stats, max_ratio=100
    )
    assert count == 2 and stats == {"dropped_long_pairs": 2}
    assert (tmp_path / "en").read_text().splitlines() == ["one", "three"]
    assert (tmp_path / "fr").read_text().splitlines() == ["un", "trois"]


@pytest.mark.parametrize("block_split", [1, 7, 4096])
def test_lines_are_split_exactly_whatever_the_block_boundaries(tmp_path, block_split, monkeypatch):
    from xlm_core.data import archives

    monkeypatch.setattr(archives, "CHUNK", block_split)  # small blocks: lines straddle many of them
    text = "a\n\nbb\r\nccc\n" + "d" * 50 + "\n" + "e" * 9 + "\nlast"
    zip_path = write_zip(tmp_path / "s.zip", {"m.txt": text})
    with (
        zipfile.ZipFile(zip_path) as archive,
        read_zip_member(archive, archive.getinfo("m.txt"), path=zip_path, max_line_bytes=20) as reader,
    ):
        lines = list(reader.lines())
    assert lines == [b"a", b"", b"bb\r", b"ccc", None, b"e" * 9, b"last"]
    assert reader.dropped_lines == 1 and reader.longest_dropped == 50


def test_nli_rows_over_the_line_cap_are_dropped_and_counted(tmp_path):
    dev = {lang: list(rows) for lang, rows in XNLI_DEV.items()}
    first_lang = next(iter(dev))
    premise, hypothesis, label = dev[first_lang][0]
    dev[first_lang][0] = (premise + " word" * 2000, hypothesis, label)
    zip_path = write_zip(
        tmp_path / "x.zip", {"XNLI-1.0/xnli.dev.tsv": xnli_tsv(dev), "XNLI-1.0/xnli.test.tsv": xnli_tsv(XNLI_TEST)}
    )
    dropped: dict[str, int] = {}
    counts = read_xnli(zip_path, tmp_path / "out", max_line_bytes=4096, dropped=dropped)
    assert dropped == {"XNLI-1.0/xnli.dev.tsv": 1}
    assert counts[first_lang]["valid"] == len(XNLI_DEV[first_lang]) - 1


def test_extraction_applies_the_ratio_guard_to_zip_members_and_whole_tars(tmp_path):
    bomb = _bomb(tmp_path / "bomb.zip", mib=40, members=("big.txt",))
    with pytest.raises(ArchiveSizeError, match="max_ratio"):
        extract_zip(bomb, tmp_path / "out", max_ratio=100)
    assert not (tmp_path / "out").exists()
    tgz = tmp_path / "bomb.tgz"
    with tarfile.open(tgz, "w:gz") as archive, zipfile.ZipFile(bomb) as source, source.open("big.txt") as data:
        info = tarfile.TarInfo("big.txt")
        info.size = source.getinfo("big.txt").file_size
        archive.addfile(info, data)
    with pytest.raises(ArchiveSizeError, match="the archive decompresses to more than 100 times"):
        extract_tar(tgz, tmp_path / "out", max_ratio=100)
    assert not (tmp_path / "out").exists()
    # Below the floor a high ratio is fine: small members of repetitive text are common.
    small = _bomb(tmp_path / "small.zip", mib=RATIO_FLOOR // MiB - 1, members=("small.txt",))
    assert len(extract_zip(small, tmp_path / "ok", max_ratio=100)) == 1
