"""Content-addressed reuse of finished pipeline stages.

A stage run is identified by a key over its name and label, the config values its output depends
on, the content digests of its input files, its output paths and the source of the code that
computes it (plus the versions of the external tools it runs). When it finishes, a record with
the key, its small result and the size and mtime of every output is written atomically to
`<workdir>/.stages/<name>/<label>.json`. A rerun with the same key whose outputs are untouched
returns the recorded result without recomputing; a stage killed halfway leaves no record, so it
runs again. The key doubles as the Prefect cache key of the task wrapping the stage.

Input digests are SHA-256 of the file contents, memoised per (path, size, mtime) under
`<workdir>/.stages/digests/`, so a multi-gigabyte upstream file is hashed once, not on every run.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlm_core.io import atomic_open, file_digest

__all__ = ["Stage", "code_digest", "content_digest", "fingerprint", "root_id", "run_stage"]

logger = logging.getLogger(__name__)

_FORMAT = 1  # bump when the record layout changes


@functools.cache
def code_digest(modules: tuple[str, ...], distributions: tuple[str, ...] = ()) -> str:
    """Digest of the named modules' source files and the installed versions of the named distributions."""
    digest = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"stage code module {name!r} not found")
        digest.update(name.encode() + b"\0" + Path(spec.origin).read_bytes())
    for dist in distributions:
        digest.update(f"{dist}=={importlib.metadata.version(dist)}".encode())
    return digest.hexdigest()


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def fingerprint(path: Path, memo_dir: Path) -> str:
    """SHA-256 of a file (or of a directory's files and relative names), memoised on size and mtime."""
    if path.is_dir():
        digest = hashlib.sha256()
        for file in _files(path):
            digest.update(f"{file.relative_to(path)}\0{fingerprint(file, memo_dir)}\0".encode())
        return digest.hexdigest()
    size, mtime = _stat(path)
    memo = memo_dir / (hashlib.sha1(str(path.resolve()).encode()).hexdigest() + ".json")
    try:
        saved = json.loads(memo.read_text(encoding="utf-8"))
        if saved["size"] == size and saved["mtime_ns"] == mtime:
            return saved["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    value = file_digest(path, "sha256")
    memo.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(memo) as handle:
        json.dump({"path": str(path), "size": size, "mtime_ns": mtime, "sha256": value}, handle)
    return value


def content_digest(path: Path, root: Path) -> str:
    """`fingerprint` of `path` with the memo of the work directory `root` (shared with stage keys)."""
    return fingerprint(path, root / ".stages" / "digests")


def root_id(root: Path) -> str:
    """A random id created with `<root>/.stages`: a work directory deleted and made anew gets new keys,
    so an orchestrator's cache never answers for files that went with the old one."""
    path = root / ".stages" / "id"
    if not path.exists():
        # Create-if-absent in one step (a hard link fails when the name exists), so concurrent
        # first calls agree on one id instead of each returning its own before the other's rename.
        path.parent.mkdir(parents=True, exist_ok=True)
        candidate = uuid.uuid4().hex
        tmp = path.with_name(f".id-{candidate}")
        tmp.write_text(candidate + "\n", encoding="utf-8")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text(encoding="utf-8").strip()


@dataclass(frozen=True)
class Stage:
    """One run of one stage: what it reads, what it writes, what else its output depends on."""

    name: str
    label: str
    root: Path  # the work directory holding `.stages/`
    params: Mapping[str, Any] = field(default_factory=dict)
    inputs: Sequence[Path] = ()
    outputs: Sequence[Path] = ()
    code: Sequence[str] = ()  # modules whose source defines the output
    tools: Sequence[str] = ()  # distributions whose version defines the output

    @property
    def record_path(self) -> Path:
        return self.root / ".stages" / self.name / f"{self.label}.json"

    def key(self) -> str:
        """The stage's input address; raises FileNotFoundError when an input is missing."""
        identity = {
            "format": _FORMAT,
            "root": root_id(self.root),
            "stage": self.name,
            "label": self.label,
            "params": self.params,
            "inputs": [[str(p), content_digest(Path(p), self.root)] for p in self.inputs],
            "outputs": [str(p) for p in self.outputs],
            "code": code_digest(tuple(self.code), tuple(self.tools)),
        }
        blob = json.dumps(identity, sort_keys=True, default=str).encode()
        return f"{self.name}-{self.label}-{hashlib.sha256(blob).hexdigest()[:32]}"

    def _output_stats(self) -> list[list[Any]]:
        return [[str(f), *_stat(f)] for out in self.outputs for f in _files(Path(out))]

    def reusable(self, key: str | None = None) -> Any | None:
        """The recorded result when this exact stage run finished before and its outputs are untouched."""
        try:
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
            key = key or self.key()
            if record["key"] != key or not all(Path(p).exists() for p in self.outputs):
                return None
            if record["outputs"] != self._output_stats():
                return None
        except (OSError, ValueError, KeyError):
            return None
        return record["result"]

    def cache_key(self) -> str | None:
        """The key under which an orchestrator may cache this stage's result, or None: run it uncached.

        Never run here (no record): the key, so the result of this first run is stored under it.
        Finished with these inputs and untouched outputs: the key (a cache hit). Anything else (the
        outputs were changed or deleted, or the last run here had other inputs): None, because a
        result cached under this key earlier would describe files that are no longer there.
        """
        try:
            key = self.key()
        except FileNotFoundError:
            return None
        if not self.record_path.exists():
            return key
        return key if self.reusable(key) is not None else None

    def record(self, key: str, result: Any) -> None:
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(self.record_path) as handle:
            json.dump({"key": key, "result": result, "outputs": self._output_stats()}, handle, indent=1)


def run_stage(stage: Stage, compute: Callable[[], Any]) -> Any:
    """Return the recorded result of an identical finished run, or compute, record and return it."""
    key = stage.key()
    previous = stage.reusable(key)
    if previous is not None:
        logger.info("%s %s: unchanged inputs, reusing %s", stage.name, stage.label, stage.record_path)
        return previous
    if stage.record_path.exists():
        os.unlink(stage.record_path)  # outdated: a crash during compute must not leave it looking valid
    result = compute()
    stage.record(key, result)
    return result
