"""Moses pre-tokenisation, as XLM's `tools/tokenize.sh` plus `lowercase_and_remove_accent.py`.

Chain per line: Unicode whitespace collapsed to single spaces → sacremoses punctuation
normaliser (with XLM's replace-unicode-punctuation and remove-non-printing-char steps) →
Moses tokenizer without escaping → optional lowercase-and-remove-accents (then NFC) →
whitespace collapsed again. The output's only separator is `' '`, which is what fastBPE
and `binarize` split on, so every stage agrees on what a word is.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import time
import unicodedata
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import cache
from pathlib import Path
from typing import Any

from sacremoses import MosesPunctNormalizer, MosesTokenizer

from xlm_core.io import ProgressLog, atomic_open

__all__ = ["SEGMENTER_LANGS", "lowercase_and_remove_accent", "normalize_and_tokenize", "tokenize_file"]

logger = logging.getLogger(__name__)

# Languages whose words are not space-delimited; XLM used dedicated segmenters for them.
SEGMENTER_LANGS = frozenset({"zh", "ja", "th"})


def _check_lang(lang: str) -> None:
    if lang in SEGMENTER_LANGS:
        raise ValueError(
            f"tokenization for {lang!r} needs a word segmenter (zh: jieba/pkuseg, ja: fugashi, th: pythainlp), "
            "which is not implemented yet (planned as a later issue); remove it from data.langs for now"
        )


@cache
def _moses(lang: str) -> tuple[MosesPunctNormalizer, MosesTokenizer]:
    """One normaliser/tokenizer pair per language and process (building them loads regex tables)."""
    normalizer = MosesPunctNormalizer(lang, pre_replace_unicode_punct=True, post_remove_control_chars=True)
    return normalizer, MosesTokenizer(lang)


def _collapse_whitespace(text: str) -> str:
    # str.split() without arguments splits on every Unicode whitespace (NBSP, U+3000, tabs, \r, U+2028).
    return " ".join(text.split())


def lowercase_and_remove_accent(text: str) -> str:
    """XLM's lowercase_and_remove_accent (lower, NFD, drop Mn, lower), followed by NFC.

    NFC recomposes what survives the accent removal (e.g. Hangul jamo) so equal words have one
    byte form; for Latin, Greek and Cyrillic text the result equals XLM's exactly.
    """
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(char for char in text if unicodedata.category(char) != "Mn").lower()
    return unicodedata.normalize("NFC", text)


def normalize_and_tokenize(line: str, lang: str, *, lowercase: bool) -> str:
    """Tokenize one line of `lang` text; returns tokens joined by single spaces ('' for a blank line)."""
    _check_lang(lang)
    text = _collapse_whitespace(line)
    if not text:
        return ""
    normalizer, tokenizer = _moses(lang)
    text = tokenizer.tokenize(normalizer.normalize(text), escape=False, return_str=True)
    if lowercase:
        text = lowercase_and_remove_accent(text)
    return _collapse_whitespace(text)


def _tokenize_chunk(args: tuple[str, int, list[bytes], str, bool]) -> tuple[str, int, int]:
    """Worker: decode and tokenize a chunk of raw lines; returns (text, n_tokens, n_empty)."""
    path, first_line, raw_lines, lang, lowercase = args
    out: list[str] = []
    n_tokens = n_empty = 0
    for offset, raw in enumerate(raw_lines):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{path}:{first_line + offset}: not valid UTF-8 ({error}); re-extract or re-encode the file"
            ) from error
        tokens = normalize_and_tokenize(line, lang, lowercase=lowercase)
        if tokens:
            n_tokens += tokens.count(" ") + 1
        else:
            n_empty += 1
        out.append(tokens)
        out.append("\n")
    return "".join(out), n_tokens, n_empty


def _read_chunks(path: Path, chunk_lines: int) -> Iterator[tuple[int, list[bytes]]]:
    """Yield (first line number, raw lines) chunks; lines split on b'\\n' only, so a stray '\\r'
    or U+2028 inside a line never changes the line count (parallel files stay aligned)."""
    with open(path, "rb") as handle:
        chunk: list[bytes] = []
        first = 1
        for number, raw in enumerate(handle, start=1):
            chunk.append(raw.rstrip(b"\n"))
            if len(chunk) == chunk_lines:
                yield first, chunk
                chunk, first = [], number + 1
        if chunk:
            yield first, chunk


def _run_pool(
    tasks: Iterator[tuple[str, int, list[bytes], str, bool]],
    workers: int,
    consume: Callable[[tuple[str, int, int], Any], None],
    handle: Any,
) -> None:
    """Tokenize chunks in `workers` processes, consuming results in input order.

    At most `4 * workers` chunks are in flight (bounded memory). A ProcessPoolExecutor rather than
    multiprocessing.Pool: if a worker dies (killed, out of memory), Pool silently replaces it and
    waits forever for the lost chunk, while the executor raises BrokenProcessPool.
    """
    # spawn: the caller may hold threads (Prefect, Ray) that make fork unsafe.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending: collections.deque[Future[tuple[str, int, int]]] = collections.deque()
        for task in tasks:
            pending.append(pool.submit(_tokenize_chunk, task))
            if len(pending) >= 4 * workers:
                consume(pending.popleft().result(), handle)
        while pending:
            consume(pending.popleft().result(), handle)
    except BrokenProcessPool as error:
        raise RuntimeError(
            "a tokenization worker process died or could not start (killed, out of memory?); lower tokenization.workers"
        ) from error
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def tokenize_file(
    in_path: str | Path,
    out_path: str | Path,
    *,
    lang: str,
    lowercase: bool,
    workers: int = 2,
    chunk_lines: int = 2000,
) -> dict[str, Any]:
    """Tokenize a text file line by line into `out_path` (same number of lines, same order).

    Chunks of `chunk_lines` lines go to `workers` processes; at most `4 * workers` chunks are
    in flight, so memory stays bounded whatever the file size. The output appears
    only once complete.

    Returns:
        Stats: `lines`, `tokens`, `empty_lines`, `seconds`.
    """
    _check_lang(lang)
    if workers < 1 or chunk_lines < 1:
        raise ValueError(f"tokenize_file: workers ({workers}) and chunk_lines ({chunk_lines}) must be >= 1")
    in_path, out_path = Path(in_path), Path(out_path)
    if not in_path.is_file():
        raise ValueError(f"tokenize_file: input {in_path} does not exist; run the split stage first")
    start = time.monotonic()
    progress = ProgressLog(f"tokenize {in_path.name} ({lang})", log=logger)
    stats = {"lines": 0, "tokens": 0, "empty_lines": 0}

    def consume(result: tuple[str, int, int], handle: Any) -> None:
        text, n_tokens, n_empty = result
        handle.write(text)
        n_lines = text.count("\n")
        stats["lines"] += n_lines
        stats["tokens"] += n_tokens
        stats["empty_lines"] += n_empty
        progress.update(n_lines)

    tasks = ((str(in_path), first, chunk, lang, lowercase) for first, chunk in _read_chunks(in_path, chunk_lines))
    with atomic_open(out_path, "w", newline="\n") as handle:
        if workers == 1:
            for task in tasks:
                consume(_tokenize_chunk(task), handle)
        else:
            _run_pool(tasks, workers, consume, handle)
    progress.done()
    result: dict[str, Any] = dict(stats)
    result["seconds"] = round(time.monotonic() - start, 3)
    logger.info(
        "tokenized %s -> %s: %d lines, %d tokens, %d empty",
        in_path,
        out_path,
        stats["lines"],
        stats["tokens"],
        stats["empty_lines"],
    )
    return result
