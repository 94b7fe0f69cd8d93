"""Pinned demo sources: the lock catches a tampered file, downloads are atomic, the demo corpora built
from the sources match the committed manifest, and the library reads nothing from the OS's /usr/share."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from xlm_core.data import demo_sources
from xlm_core.data.demo_manifest import (
    MANIFEST_PATH,
    DemoCorpusError,
    build_demo_corpora,
    check_corpus,
    content_digests,
    demo_params,
    load_manifest,
)
from xlm_core.data.demo_mirror import build_demo_mirror, mirror_files
from xlm_core.data.demo_sources import SOURCES, DemoSourceError, ensure_demo_sources

REPO = Path(__file__).resolve().parents[2]
SMALL_DEB = next(s for s in SOURCES if s.name == "manpages")


def test_lock_table_is_complete() -> None:
    assert len({s.file for s in SOURCES}) == len(SOURCES)
    for source in SOURCES:
        assert source.kind in ("deb", "pypi") and re.fullmatch(r"[0-9a-f]{64}", source.sha256), source
        assert source.version in source.file and source.licence and source.used_for, source
        assert source.kind == "pypi" or source.url.endswith("/" + source.file), source
    # The committed manifest names exactly the locked files and digests.
    assert load_manifest()["sources"] == {s.file: s.sha256 for s in SOURCES}


def test_tampered_file_is_named_with_both_digests_and_the_fix(tmp_path: Path) -> None:
    real = ensure_demo_sources().files[SMALL_DEB.file]
    (tmp_path / "good").mkdir()
    shutil.copy(real, tmp_path / "good")
    good = ensure_demo_sources(tmp_path / "good", sources=[SMALL_DEB], download=False)
    assert (good.man_root / "man7" / "man.7.gz").is_file()  # unpacked into the cache, not installed

    bad = tmp_path / "bad" / SMALL_DEB.file
    bad.parent.mkdir()
    data = bytearray(real.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(DemoSourceError) as caught:
        ensure_demo_sources(bad.parent, sources=[SMALL_DEB], download=False)
    message = str(caught.value)
    assert str(bad) in message and SMALL_DEB.sha256 in message
    assert re.search(r"got [0-9a-f]{64}", message) and "Fix: delete" in message
    assert not (bad.parent / "man").exists()  # nothing is unpacked from an unverified file


def test_missing_file_without_download_says_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(DemoSourceError, match=rf"{SMALL_DEB.file}.*python -m xlm_core.data.demo_sources"):
        ensure_demo_sources(tmp_path, sources=[SMALL_DEB], download=False)


def test_a_bad_download_never_lands_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_download(source: demo_sources.Source, tmp: Path) -> Path:
        (tmp / source.file).write_bytes(b"not the package")
        return tmp / source.file

    monkeypatch.setattr(demo_sources, "_download", fake_download)
    with pytest.raises(DemoSourceError, match=rf"{SMALL_DEB.file} .*expected sha256 {SMALL_DEB.sha256}.*not kept"):
        ensure_demo_sources(tmp_path, sources=[SMALL_DEB])
    assert list(tmp_path.iterdir()) == []  # no partial file, no temporary folder


def test_demo_corpora_match_the_committed_manifest(tmp_path: Path) -> None:
    """The demo config's mirror and NLI set, built from the pinned sources (about 15 s)."""
    params = demo_params()
    manifest = load_manifest()
    for kind in ("mirror", "nli"):
        assert params[kind] == manifest["corpora"][kind]["params"], f"configs/demo.yaml changed: {kind}"
    built = build_demo_corpora(tmp_path, params)
    for kind in ("mirror", "nli"):
        expected = manifest["corpora"][kind]
        differing = sorted(n for n in expected["files"].keys() | built[kind]["files"].keys()
                           if expected["files"].get(n) != built[kind]["files"].get(n))  # fmt: skip
        assert not differing, f"{kind}: {differing[:3]} differ; rerun --write-manifest if intended"
        assert built[kind]["digest"] == expected["digest"]


def test_check_names_the_differing_file_and_skips_other_sizes(tmp_path: Path) -> None:
    params = {"langs": ["en", "fr"], "pairs": ["en-fr"], "date": "20240101", "max_pages": 2, "max_pairs": 20}
    built = build_demo_mirror(tmp_path / "m", **params, check=False)
    files = mirror_files(built)
    root = tmp_path / "m"
    real = check_corpus("mirror", params, root, files)  # other sizes than the manifest's: not compared
    assert re.fullmatch(r"[0-9a-f]{64}", real)

    entry = {"params": {**params, "corpora": None}, "files": {}, "digest": ""}
    fake = json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))
    fake["corpora"]["mirror"] = entry
    entry["files"] = {name: "0" * 64 for name in content_digests(root, files)}
    (tmp_path / "manifest.json").write_text(json.dumps(fake), encoding="utf-8")
    with pytest.raises(DemoCorpusError, match=r"en-fr\.txt\.zip!GNOME\.en-fr\.en has sha256 [0-9a-f]{64}.*Fix:"):
        check_corpus("mirror", {**params, "corpora": None}, root, files, manifest=tmp_path / "manifest.json")

    fake["sources"] = {SMALL_DEB.file: "0" * 64}
    (tmp_path / "manifest.json").write_text(json.dumps(fake), encoding="utf-8")
    with pytest.raises(DemoCorpusError, match="other sources than the lock"):
        check_corpus("mirror", {**params, "corpora": None}, root, files, manifest=tmp_path / "manifest.json")


def test_library_reads_nothing_from_usr_share() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sorted((REPO / "xlm_core").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "/usr/share" in line
    ]
    assert not offenders, offenders
