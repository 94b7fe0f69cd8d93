"""The committed manifest of the demo's inputs and outputs, `configs/demo-sources.lock.json`.

It records the SHA-256 of every pinned source file (`demo_sources.SOURCES`) and of the corpora built
from them for the demo config (`configs/demo.yaml`): the Wikipedia dumps and OPUS zip of the demo
mirror, and the XNLI/MultiNLI zips of the demo NLI set. Compressed bytes may differ between bzip2 and
zlib builds, so the corpus digests are over *content*: a `.bz2` file decompressed, each zip member's
text; the checksum lists and `dumpstatus.json`, which hold digests of the compressed files, are left out.

`check_corpus` runs after each demo build: it logs the corpus digest, and when the build's parameters
are the manifest's it raises `DemoCorpusError` naming the first file that differs. Other sizes (test
configs) are not compared. `write_manifest` (`python -m xlm_core.data.demo_sources --write-manifest`)
rebuilds the corpora with the demo config and rewrites the file.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import logging
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from xlm_core.data.demo_sources import REPO_ROOT, SOURCES, DemoSources, ensure_demo_sources
from xlm_core.io import atomic_open

__all__ = [
    "MANIFEST_PATH",
    "DemoCorpusError",
    "check_corpus",
    "content_digests",
    "corpus_digest",
    "load_manifest",
    "write_manifest",
]

logger = logging.getLogger(__name__)

MANIFEST_PATH = REPO_ROOT / "configs" / "demo-sources.lock.json"
DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
REGENERATE = "python -m xlm_core.data.demo_sources --write-manifest"
# Files whose text holds digests of compressed bytes (bzip2 builds differ): not compared.
_DERIVED = ("sha1sums.txt", "md5sums.txt", "dumpstatus.json")


class DemoCorpusError(ValueError):
    """A demo corpus built here differs from the committed manifest, or the manifest is stale."""


def content_digests(root: Path, paths: list[Path]) -> dict[str, str]:
    """`{relative name: sha256 of the content}` for built files under `root`; zips give one entry per member."""
    out: dict[str, str] = {}
    for path in sorted(paths):
        name = path.relative_to(root).as_posix()
        if path.name.endswith(_DERIVED):
            continue
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                for member in archive.infolist():
                    out[f"{name}!{member.filename}"] = hashlib.sha256(archive.read(member)).hexdigest()
        elif path.suffix == ".bz2":
            out[name] = hashlib.sha256(bz2.decompress(path.read_bytes())).hexdigest()
        else:
            out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def corpus_digest(files: dict[str, str]) -> str:
    """One SHA-256 over `content_digests` (names and digests, sorted)."""
    return hashlib.sha256("".join(f"{name}\t{digest}\n" for name, digest in sorted(files.items())).encode()).hexdigest()


def _canonical(params: dict[str, Any]) -> Any:
    return json.loads(json.dumps(params, sort_keys=True))  # tuples → lists, as stored in the manifest


def load_manifest(path: Path = MANIFEST_PATH) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DemoCorpusError(f"demo manifest {path} is missing. Fix: restore it from git or run `{REGENERATE}`") from e


def check_corpus(
    kind: str, params: dict[str, Any], root: Path, paths: list[Path], *, manifest: Path = MANIFEST_PATH
) -> str:
    """Log the digest of a built demo corpus; compare it with the manifest when built with the demo's parameters.

    Args:
        kind: "mirror" or "nli".
        params: the builder's arguments (sizes, languages, date).
        root: folder the built files are named relative to.
        paths: the built files.

    Returns:
        The corpus digest.

    Raises:
        DemoCorpusError: the manifest is stale (other sources) or a built file differs from it.
    """
    files = content_digests(Path(root), paths)
    digest = corpus_digest(files)
    if not Path(manifest).is_file():
        logger.warning(
            "demo %s corpus sha256 %s; no manifest at %s to compare with (`%s`)", kind, digest, manifest, REGENERATE
        )
        return digest
    entry = load_manifest(manifest).get("corpora", {}).get(kind)
    compared = entry is not None and _canonical(params) == entry.get("params")
    if compared:
        _check_sources(load_manifest(manifest), manifest)
        differing = sorted(set(files) ^ set(entry["files"]) | {n for n in files if entry["files"].get(n) != files[n]})
        if differing:
            first = differing[0]
            raise DemoCorpusError(
                f"demo {kind} corpus differs from {manifest}: {first} has sha256 {files.get(first, 'none (missing)')}, "
                f"the manifest {entry['files'].get(first, 'none (not expected)')} ({len(differing)} file(s) differ). "
                f"Fix: if you changed the demo builders or sources on purpose, run `{REGENERATE}` and commit the "
                "manifest; otherwise this machine builds other text from the same sources: report it, naming the file."
            )
    note = ", as in the committed manifest" if compared else "; not the demo config's sizes, not compared"
    logger.info("demo %s corpus sha256 %s (%d files%s)", kind, digest, len(files), note)
    return digest


def _check_sources(data: dict[str, Any], manifest: Path) -> None:
    recorded = data.get("sources", {})
    locked = {s.file: s.sha256 for s in SOURCES}
    if recorded != locked:
        changed = sorted(set(recorded) ^ set(locked) | {f for f in locked if recorded.get(f) != locked[f]})
        raise DemoCorpusError(
            f"demo manifest {manifest} was written for other sources than the lock in "
            f"xlm_core/data/demo_sources.py (differs for {', '.join(changed)}). Fix: run `{REGENERATE}` and commit it."
        )


def demo_params(config: Path = DEMO_CONFIG) -> dict[str, dict[str, Any]]:
    """The builders' arguments for the demo config, taken the way the pipeline stages take them."""
    from xlm_core.config import load_config
    from xlm_core.data.source_stages import _mirror_args  # the stage's own mapping, so the two cannot drift

    cfg = load_config(config)
    x = cfg.xnli
    return {
        "mirror": _canonical(_mirror_args(cfg)),
        "nli": _canonical({"langs": list(x.langs), "train_pairs": x.demo_train_pairs, "eval_pairs": x.demo_eval_pairs}),
    }


def build_demo_corpora(out_root: Path, params: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Build the mirror and the NLI set under `out_root`; `{kind: {"digest", "files"}}` (not compared)."""
    from xlm_core.data import demo_mirror, demo_nli

    built = demo_mirror.build_demo_mirror(out_root / "mirror", **params["mirror"], check=False)
    nli = demo_nli.build_demo_nli(out_root / "nli", **params["nli"], check=False)
    out = {}
    for kind, root, paths in (
        ("mirror", out_root / "mirror", demo_mirror.mirror_files(built)),
        ("nli", out_root / "nli", demo_nli.nli_files(nli)),
    ):
        files = content_digests(root.resolve(), paths)
        out[kind] = {"digest": corpus_digest(files), "files": files}
    return out


def write_manifest(sources: DemoSources | None = None, path: Path = MANIFEST_PATH, config: Path = DEMO_CONFIG) -> dict:
    """Rebuild the demo corpora from the verified sources and rewrite the manifest; returns its content."""
    found = sources or ensure_demo_sources()
    params = demo_params(config)
    with tempfile.TemporaryDirectory(prefix="demo-manifest-") as tmp:
        corpora = build_demo_corpora(Path(tmp), params)
    data = {
        "about": "SHA-256 of the pinned demo sources and of the demo corpora's content; written by `"
        + REGENERATE
        + "`. See xlm_core/data/README.md.",
        "sources": {s.file: s.sha256 for s in SOURCES if s.file in found.files},
        "corpora": {kind: {"params": params[kind], **corpora[kind]} for kind in ("mirror", "nli")},
    }
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=1, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
    for kind in ("mirror", "nli"):
        logger.info("manifest %s: demo %s corpus sha256 %s", path, kind, corpora[kind]["digest"])
    return data
