"""The cleaning stage's filters: length, length ratio, language, exact and near duplicates.

`clean_files` reads one text file (a Wikipedia language) or the line-aligned sides of a parallel
corpus and writes the kept lines (pairs) in their order. Every removed line is counted under the
first filter that removes it, in this order:

1. `min_words` / `max_words`: words of each side (whitespace-separated; characters for languages
   written without spaces, `UNSPACED_LANGS`); an empty line has none;
2. `min_chars` / `max_chars`: characters of the line without surrounding whitespace (each side);
3. `ratio` (pairs): the larger word count over the smaller above `max_ratio` (Moses clean-corpus-n);
4. `lid`: confidence in the expected language below `lid_threshold` (`xlm_core.data.lid`: CLD2, with
   py3langid's second opinion before anything is removed; each side of a pair); lines with fewer than
   `lid_min_words` words after stripping URLs, numbers and placeholders are not checked, since
   detectors are unreliable on a few words;
5. `duplicate`: a line (pair) whose normalised form was kept earlier in the file (`xlm_core.data.dedup`);
6. `near_duplicate`: MinHash Jaccard similarity to a kept line of the same corpus above the threshold.

Filters 1-4 and the duplicate keys run in `workers` processes, chunk by chunk; the duplicate
decisions use the whole file's keys, then a second pass writes the kept lines (and runs the
near-duplicate index, which is sequential). A file may hold several corpora (`Segment`), each with its
own settings; exact duplicates are found across all of them. Wikipedia's article boundaries
(`articles_in`: line counts per article) are carried over to `articles_out`; an article with no
line left is dropped.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xlm_core.data.dedup import NearDuplicates, first_occurrences, line_key
from xlm_core.data.lid import LID_UNCHECKED, check_line, supported
from xlm_core.data.split import count_lines
from xlm_core.io import ProgressLog, atomic_open
from xlm_core.process_tree import process_pool

__all__ = ["REASONS", "UNSPACED_LANGS", "CleaningError", "Segment", "clean_files", "count_words", "line_reason"]

logger = logging.getLogger(__name__)

REASONS = ("min_words", "max_words", "min_chars", "max_chars", "ratio", "lid", "duplicate", "near_duplicate")
_CODE = {reason: index + 1 for index, reason in enumerate(REASONS)}  # 0: kept
UNSPACED_LANGS = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo", "wuu", "gan", "zh_classical", "zh_yue"})
_CHUNK_LINES = 4000
# Below this many lines one process is faster: starting the pool's fork server imports the package (seconds).
_MIN_POOL_LINES = 200_000


class CleaningError(ValueError):
    """The inputs cannot be cleaned (missing, misaligned, or article counts that do not match the text)."""


@dataclass(frozen=True)
class Segment:
    """`lines` consecutive lines (None: to the end of the file) cleaned with `filters`."""

    name: str
    filters: dict[str, Any]
    lines: int | None = None


def count_words(text: str, lang: str) -> int:
    """Whitespace-separated words; for languages written without spaces, non-space characters."""
    if lang in UNSPACED_LANGS or lang.startswith("zh"):
        return sum(1 for char in text if not char.isspace())
    return len(text.split())


def line_reason(texts: Sequence[str], langs: Sequence[str], f: dict[str, Any], lid_stats: Any = None) -> str | None:
    """The first filter (of 1-4) that removes this line or pair, or None when it passes them."""
    words = [count_words(text, lang) for text, lang in zip(texts, langs, strict=True)]
    if min(words) < f["min_words"]:
        return "min_words"
    if max(words) > f["max_words"]:
        return "max_words"
    sizes = [len(text.strip()) for text in texts]
    if min(sizes) < f["min_chars"]:
        return "min_chars"
    if max(sizes) > f["max_chars"]:
        return "max_chars"
    if len(texts) == 2 and f.get("max_ratio") and max(words) > f["max_ratio"] * min(words):
        return "ratio"
    if f["lid"]:
        failed = False
        for text, lang in zip(texts, langs, strict=True):
            if not supported(lang):  # warned once per file by clean_files; counted nowhere
                continue
            share = check_line(text, lang, f["lid_min_words"], f["lid_threshold"], count_words=count_words)
            if lid_stats is not None:
                lid_stats[f"lid_short_{lang}" if share == LID_UNCHECKED else f"lid_checked_{lang}"] += 1
            if share != LID_UNCHECKED and share < f["lid_threshold"]:
                failed = True
                if lid_stats is not None:
                    lid_stats[f"lid_failed_{lang}"] += 1
        if failed:
            return "lid"
    return None


def _decode(line: bytes) -> str:
    return line.rstrip(b"\r\n").decode("utf-8", "replace")


def _score_chunk(task: tuple[list[tuple[bytes, ...]], tuple[str, ...], dict[str, Any]]) -> tuple[bytes, bytes, dict]:
    """Filters 1-4 and the duplicate key of each line of a chunk: (status codes, keys, LID counts)."""
    rows, langs, f = task
    status = np.zeros(len(rows), dtype=np.uint8)
    keys = np.zeros(len(rows), dtype=np.uint64)
    lid_stats: collections.Counter[str] = collections.Counter()
    for index, row in enumerate(rows):
        texts = [_decode(line) for line in row]
        reason = line_reason(texts, langs, f, lid_stats)
        if reason is None:
            keys[index] = line_key(texts)
        else:
            status[index] = _CODE[reason]
    return status.tobytes(), keys.tobytes(), dict(lid_stats)


def _rows(inputs: Sequence[Path], segments: Sequence[Segment]) -> Iterator[tuple[int, list[tuple[bytes, ...]]]]:
    """(segment index, chunk of rows): chunks never straddle two segments."""
    with contextlib.ExitStack() as stack:
        readers = [stack.enter_context(open(path, "rb")) for path in inputs]
        rows_iter = zip(*readers, strict=True)
        for index, segment in enumerate(segments):
            remaining = segment.lines
            while remaining is None or remaining > 0:
                size = _CHUNK_LINES if remaining is None else min(_CHUNK_LINES, remaining)
                chunk = [row for _, row in zip(range(size), rows_iter, strict=False)]
                if chunk:
                    yield index, chunk
                if remaining is not None:
                    remaining -= len(chunk)
                if len(chunk) < size:
                    if remaining:
                        raise CleaningError(f"{inputs[0]}: segment {segment.name} ends {remaining} lines early")
                    break
            if index == len(segments) - 1 and next(rows_iter, None) is not None:
                raise CleaningError(f"{inputs[0]} has lines after its last segment ({segment.name})")


def _score_all(
    inputs: Sequence[Path], langs: tuple[str, ...], segments: Sequence[Segment], workers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, collections.Counter[str]]:
    statuses: list[bytes] = []
    keys: list[bytes] = []
    owners: list[np.ndarray] = []
    lid_stats: collections.Counter[str] = collections.Counter()
    progress = ProgressLog(f"clean {inputs[0].name}", log=logger)

    def consume(index: int, result: tuple[bytes, bytes, dict]) -> None:
        statuses.append(result[0])
        keys.append(result[1])
        owners.append(np.full(len(result[0]), index, dtype=np.uint16))
        lid_stats.update(result[2])
        progress.update(len(result[0]))

    tasks = ((index, (chunk, langs, segments[index].filters)) for index, chunk in _rows(inputs, segments))
    if workers == 1:
        for index, task in tasks:
            consume(index, _score_chunk(task))
    else:
        with process_pool(workers, preload=[__name__]) as pool:
            try:
                pending: collections.deque[tuple[int, Future]] = collections.deque()
                for index, task in tasks:
                    pending.append((index, pool.submit(_score_chunk, task)))
                    if len(pending) >= 4 * workers:
                        first, future = pending.popleft()
                        consume(first, future.result())
                while pending:
                    first, future = pending.popleft()
                    consume(first, future.result())
            except BrokenProcessPool as error:
                raise RuntimeError(
                    "a cleaning worker process died or could not start (killed, out of memory?); lower cleaning.workers"
                ) from error
    progress.done()
    status = np.frombuffer(b"".join(statuses), dtype=np.uint8).copy()
    key = np.frombuffer(b"".join(keys), dtype=np.uint64)
    owner = np.concatenate(owners) if owners else np.zeros(0, dtype=np.uint16)
    return status, key, owner, lid_stats


def _mark_duplicates(status: np.ndarray, keys: np.ndarray, owner: np.ndarray, segments: Sequence[Segment]) -> None:
    """Lines passing filters 1-4 whose key an earlier such line has: `duplicate` (where dedup is on)."""
    candidates = np.flatnonzero(status == 0)
    repeated = candidates[~first_occurrences(keys[candidates])]
    enabled = np.array([bool(s.filters["dedup"]) for s in segments], dtype=bool)
    status[repeated[enabled[owner[repeated]]]] = _CODE["duplicate"]


def _read_articles(path: Path, lines: int) -> np.ndarray:
    counts = np.loadtxt(path, dtype=np.int64, ndmin=1) if path.stat().st_size else np.zeros(0, dtype=np.int64)
    if counts.sum() != lines or (counts < 1).any():
        raise CleaningError(
            f"{path}: its article line counts add up to {int(counts.sum())}, the text has {lines} lines; "
            "re-run the extract stage"
        )
    return counts


def clean_files(
    inputs: Sequence[Path],
    outputs: Sequence[Path],
    *,
    langs: Sequence[str],
    segments: Sequence[Segment],
    workers: int = 1,
    num_perm: int = 64,
    articles_in: Path | None = None,
    articles_out: Path | None = None,
) -> dict[str, Any]:
    """Clean a text file or the sides of a parallel corpus (module docstring); returns the counts.

    Returns:
        `{"lines", "kept", "removed", "removed_<filter>" for every filter, "lid_checked_<lang>",
        "lid_short_<lang>", "lid_failed_<lang>", "seconds", "lines_per_s"}`, with `articles` and
        `articles_kept` for a Wikipedia file and `segments` (the same counts per corpus) for several.
    """
    inputs, outputs, langs = [Path(p) for p in inputs], [Path(p) for p in outputs], tuple(langs)
    if not inputs or len(inputs) != len(outputs) or len(inputs) != len(langs):
        raise CleaningError(f"clean_files: {len(inputs)} inputs, {len(outputs)} outputs, {len(langs)} languages")
    for path in inputs:
        if not path.is_file():
            raise CleaningError(f"{path} does not exist; run the extract / read-parallel stage first")
    counts = [count_lines(path) for path in inputs]
    if len(set(counts)) != 1:
        listing = ", ".join(f"{path} ({n} lines)" for path, n in zip(inputs, counts, strict=True))
        raise CleaningError(f"the sides are not line-aligned: {listing}; re-run the read-parallel stage")
    for lang in set(langs):
        if any(s.filters["lid"] for s in segments) and not supported(lang):
            logger.warning("cleaning %s: no language identification for %r (CLD2 lacks it)", inputs[0], lang)
    start = time.monotonic()
    workers = workers if counts[0] >= _MIN_POOL_LINES else 1
    status, keys, owner, lid_stats = _score_all(inputs, langs, segments, workers)
    _mark_duplicates(status, keys, owner, segments)
    articles = _read_articles(articles_in, len(status)) if articles_in is not None else None
    kept_articles = _write(inputs, outputs, langs, segments, status, owner, num_perm, articles, articles_out)

    seconds = time.monotonic() - start
    stats = _counts(status)
    stats.update(sorted(lid_stats.items()))
    if articles is not None:
        stats |= {"articles": len(articles), "articles_kept": kept_articles}
    if len(segments) > 1:
        stats["segments"] = [{"corpus": s.name, **_counts(status[owner == index])} for index, s in enumerate(segments)]
    stats |= {"seconds": round(seconds, 3), "lines_per_s": round(len(status) / max(seconds, 1e-9))}
    logger.info(
        "cleaned %s: %d of %d lines kept (%s), %.0f lines/s",
        ", ".join(str(p) for p in inputs),
        stats["kept"],
        stats["lines"],
        ", ".join(f"{r} {stats[f'removed_{r}']}" for r in REASONS if stats[f"removed_{r}"]) or "nothing removed",
        stats["lines_per_s"],
    )
    return stats


def _counts(status: np.ndarray) -> dict[str, int]:
    counts = np.bincount(status, minlength=len(REASONS) + 1)
    removed = {f"removed_{reason}": int(counts[_CODE[reason]]) for reason in REASONS}
    return {"lines": len(status), "kept": int(counts[0]), "removed": len(status) - int(counts[0]), **removed}


def _write(
    inputs: Sequence[Path],
    outputs: Sequence[Path],
    langs: tuple[str, ...],
    segments: Sequence[Segment],
    status: np.ndarray,
    owner: np.ndarray,
    num_perm: int,
    articles: np.ndarray | None,
    articles_out: Path | None,
) -> int:
    """Second pass: near-duplicates (where enabled), then the kept lines and article counts written."""
    near = [
        NearDuplicates(
            s.filters["near_dedup_threshold"], num_perm, char_grams=all(lang in UNSPACED_LANGS for lang in langs)
        )
        if s.filters["near_dedup"]
        else None
        for s in segments
    ]
    kept_articles = 0
    with contextlib.ExitStack() as stack:
        readers = [stack.enter_context(open(path, "rb")) for path in inputs]
        writers = [stack.enter_context(atomic_open(path, "wb")) for path in outputs]
        docs = stack.enter_context(atomic_open(articles_out, "w")) if articles_out is not None else None
        bounds = iter(np.cumsum(articles)) if articles is not None else iter(())
        article_end, article_kept = next(bounds, None), 0
        for index, row in enumerate(zip(*readers, strict=True)):
            if (
                status[index] == 0
                and near[owner[index]] is not None
                and near[owner[index]].seen([_decode(x) for x in row])
            ):
                status[index] = _CODE["near_duplicate"]
            if status[index] == 0:
                article_kept += 1
                for writer, line in zip(writers, row, strict=True):
                    writer.write(line if line.endswith(b"\n") else line + b"\n")
            if article_end is not None and index + 1 == article_end:
                if article_kept:
                    kept_articles += 1
                    if docs is not None:
                        docs.write(f"{article_kept}\n")
                article_end, article_kept = next(bounds, None), 0
    return kept_articles
