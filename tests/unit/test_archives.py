"""Safe extraction: hostile members refused whole, size caps enforced, nothing partial left."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from tests.support.fixtures import write_iitb_tgz, write_tar_with_link, write_zip
from xlm_core.data.archives import (
    ArchiveError,
    ArchiveSizeError,
    UnsafeArchiveError,
    extract_tar,
    extract_zip,
)
from xlm_core.data.nli import read_xnli
from xlm_core.data.opus import OpusFormatError, read_moses_zip


def _only(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def test_zip_extracts_inside_target_and_skips_resource_forks(tmp_path):
    archive = write_zip(
        tmp_path / "a.zip",
        {"d/": None, "d/x.txt": "x\n", "__MACOSX/": None, "__MACOSX/d/._x.txt": b"\x00\x05", "top.txt": "t\n"},
    )
    written = extract_zip(archive, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == ["d/x.txt", "top.txt"]
    assert (tmp_path / "out" / "d" / "x.txt").read_text() == "x\n"
    assert not (tmp_path / "out" / "__MACOSX").exists()
    assert _only(tmp_path) == ["a.zip", "out"]


@pytest.mark.parametrize("name", ["../evil.txt", "d/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt"])
def test_zip_with_escaping_member_is_refused(tmp_path, name):
    archive = write_zip(tmp_path / "evil.zip", {"ok.txt": "fine\n", name: "pwned\n"})
    with pytest.raises(UnsafeArchiveError, match="absolute or parent-relative"):
        extract_zip(archive, tmp_path / "out")
    assert _only(tmp_path) == ["evil.zip"]
    assert not (tmp_path.parent / "evil.txt").exists()


def test_zip_symlink_member_is_refused(tmp_path):
    path = tmp_path / "link.zip"
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("X.en-fr.fr")
        info.create_system = 3
        info.external_attr = 0o120777 << 16  # S_IFLNK
        archive.writestr(info, "/etc/passwd")
        archive.writestr("X.en-fr.en", "a\n")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        extract_zip(path, tmp_path / "out")
    with pytest.raises(OpusFormatError, match="symbolic link"):
        read_moses_zip(path, "en-fr", tmp_path / "en", tmp_path / "fr")
    assert _only(tmp_path) == ["link.zip"]


def test_readers_refuse_escaping_members(tmp_path):
    evil = write_zip(tmp_path / "x.zip", {"XNLI-1.0/xnli.dev.tsv": "language\n", "../../xnli.test.tsv": "x"})
    with pytest.raises(UnsafeArchiveError, match=r"'\.\./\.\./xnli\.test\.tsv'"):
        read_xnli(evil, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_tar_link_member_is_refused(tmp_path, kind):
    archive = write_tar_with_link(tmp_path / "parallel.tgz", kind)
    with pytest.raises(UnsafeArchiveError, match=f"{'symbolic' if kind == 'symlink' else 'hard'} link"):
        extract_tar(archive, tmp_path / "out")
    assert _only(tmp_path) == ["parallel.tgz"]


def test_tar_with_parent_member_is_refused(tmp_path):
    path = tmp_path / "evil.tgz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 0
        archive.addfile(info)
    with pytest.raises(UnsafeArchiveError, match="parent-relative"):
        extract_tar(path, tmp_path / "out")
    assert not (tmp_path.parent / "outside.txt").exists()


def test_member_size_cap(tmp_path):
    archive = write_zip(tmp_path / "big.zip", {"a.txt": "small\n", "b.txt": "x" * 100_000})
    with pytest.raises(ArchiveSizeError, match=r"'b\.txt' decompresses to more than 50000 bytes"):
        extract_zip(archive, tmp_path / "out", max_member_bytes=50_000)
    assert _only(tmp_path) == ["big.zip"]
    with pytest.raises(ArchiveSizeError, match="max_total_bytes"):
        extract_zip(archive, tmp_path / "out", max_total_bytes=50_000)
    assert len(extract_zip(archive, tmp_path / "out", max_member_bytes=100_000)) == 2


def test_tar_extraction_select_and_truncation(tmp_path):
    good = write_iitb_tgz(tmp_path / "parallel.tgz")
    out = extract_tar(good, tmp_path / "out", select=lambda name: name.endswith(".en"))
    assert [p.relative_to(tmp_path / "out").as_posix() for p in out] == ["parallel/IITB.en-hi.en"]
    with pytest.raises(ArchiveError, match="already exists"):
        extract_tar(good, tmp_path / "out")
    truncated = tmp_path / "cut.tgz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ArchiveError, match=r"cut\.tgz"):
        extract_tar(truncated, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    (tmp_path / "junk.tgz").write_bytes(b"not an archive")
    with pytest.raises(ArchiveError, match="not a readable tar"):
        extract_tar(tmp_path / "junk.tgz", tmp_path / "out3")
