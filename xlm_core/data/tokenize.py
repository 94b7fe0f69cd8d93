"""Pre-tokenisation per language, as XLM's `tools/tokenize.sh` plus `lowercase_and_remove_accent.py`.

Chain per line: Unicode whitespace collapsed to single spaces → sacremoses punctuation
normaliser (with XLM's replace-unicode-punctuation and remove-non-printing-char steps) →
Moses tokenizer without escaping, or a word segmenter for zh (jieba, before the normaliser,
as XLM and transformers do), ja (fugashi + unidic-lite) and th (pythainlp newmm) →
optional lowercase-and-remove-accents (then NFC) → whitespace collapsed again. The output's only
separator is `' '`, which is what fastBPE and `binarize` split on, so every stage agrees on what a
word is. Lowercasing strips Thai, Hindi, Arabic and Vietnamese marks (docs/original-xlm.md,
"Lowercasing and accent removal"): it is a per-language choice of the caller.
"""

from __future__ import annotations

import collections
import functools
import logging
import re
import time
import unicodedata
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from functools import cache
from pathlib import Path
from typing import Any

from sacremoses import MosesPunctNormalizer, MosesTokenizer
from sacremoses.corpus import NonbreakingPrefixes

from xlm_core.io import ProgressLog, atomic_open
from xlm_core.process_tree import process_pool

__all__ = [
    "SEGMENTER_LANGS",
    "lowercase_and_remove_accent",
    "moses_rules_fallback",
    "normalize_and_tokenize",
    "tokenize_file",
]

logger = logging.getLogger(__name__)

# Languages whose words are not space-delimited: a word segmenter replaces the Moses tokenizer.
SEGMENTER_LANGS = frozenset({"zh", "ja", "th"})


class _Substitution:
    """One `re.sub(pattern, repl, text)` of sacremoses, applied only when it can match.

    `guard` is a character every match must contain (found by `_required_char`), so the
    substitution is skipped on lines without it; a pattern without metacharacters becomes
    `str.replace`. Both give exactly `re.sub`'s result: the test suite compares the chain
    with sacremoses on thousands of real lines in several languages.
    """

    __slots__ = ("guard", "literal", "regex", "repl")

    def __init__(self, pattern: str, repl: str) -> None:
        literal = _literal(pattern)
        self.literal = literal if literal is not None and "\\" not in repl else None
        self.regex = re.compile(pattern)
        self.repl = repl
        self.guard = literal[0] if literal else _required_char(pattern)

    def __call__(self, text: str) -> str:
        if self.guard is not None and self.guard not in text:
            return text
        if self.literal is not None:
            return text.replace(self.literal, self.repl)
        return self.regex.sub(self.repl, text)


_META = frozenset(".^$*+?{}[]|()")


def _literal(pattern: str) -> str | None:
    """The plain string `pattern` matches, or None if it has regex syntax beyond escaped punctuation."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if i + 1 == len(pattern) or pattern[i + 1].isalnum():
                return None
            out.append(pattern[i + 1])
            i += 2
            continue
        if char in _META:
            return None
        out.append(char)
        i += 1
    return "".join(out) or None


def _required_char(pattern: str) -> str | None:
    """A character every match of `pattern` contains: a top-level literal that is not optional.

    Conservative: None (always apply) for alternations or anything not understood.
    """
    if "|" in pattern:
        return None
    candidates: list[str] = []
    depth, i = 0, 0
    while i < len(pattern):
        char = pattern[i]
        literal = None
        if char == "\\":
            if i + 1 < len(pattern) and not pattern[i + 1].isalnum():
                literal = pattern[i + 1]
            i += 2
        elif char == "[":
            close = pattern.find("]", i + 2)
            if close < 0:
                return None
            i = close + 1
        elif char == "(":
            depth, i = depth + 1, i + 1
        elif char == ")":
            depth, i = depth - 1, i + 1
        else:
            literal = None if char in _META else char
            i += 1
        optional = i < len(pattern) and pattern[i] in "*?{"
        if literal is not None and depth == 0 and not optional:
            candidates.append(literal)
    non_space = [char for char in candidates if char != " "]
    return (non_space or candidates or [None])[0]


class _PunctNormalizer:
    """sacremoses' `MosesPunctNormalizer(lang, pre_replace_unicode_punct=True, post_remove_control_chars=True)`
    (XLM's replace-unicode-punctuation → normalize-punctuation → remove-non-printing-char), with the
    same substitution tables in the same order, precompiled and skipped when they cannot match.
    sacremoses recompiles each pattern per call through `re.sub`, most of its cost."""

    def __init__(self, lang: str) -> None:
        reference = MosesPunctNormalizer(lang, pre_replace_unicode_punct=True, post_remove_control_chars=True)
        self._unicode = [_Substitution(p, r) for p, r in reference.REPLACE_UNICODE_PUNCTUATION]
        # normalize() skips these on ASCII lines: each must need a non-ASCII character to match.
        assert all(sub.guard is not None and not sub.guard.isascii() for sub in self._unicode)
        self._main = [_Substitution(p, r) for p, r in reference.substitutions]
        self._remove_control_chars = reference.remove_control_chars  # regex \p{C}

    def normalize(self, text: str) -> str:
        if not text.isascii():  # every unicode-punctuation pattern starts with a non-ASCII character
            for sub in self._unicode:
                text = sub(text)
        for sub in self._main:
            text = sub(text)
        if not text.isprintable():  # printable excludes every \p{C} character (and Z* but ' ')
            text = self._remove_control_chars(text)
        return text.strip()


class _MosesTokenizer(MosesTokenizer):
    """sacremoses' MosesTokenizer with its per-call costs removed, same results.

    sacremoses rebuilds a set of its ~2,000-character `IsLower`/`IsAlpha` tables on every call of
    `islower`/`isanyalpha` (about a third of its time on English prose), searches the
    nonbreaking-prefix lists linearly, and runs a regex per token to find a final period.
    """

    def __init__(self, lang: str) -> None:
        super().__init__(lang)
        self._lower = frozenset(self.IsLower)
        self._alpha = frozenset(self.IsAlpha)
        self._nonbreaking = frozenset(self.NONBREAKING_PREFIXES)
        self._numeric_only = frozenset(self.NUMERIC_ONLY_PREFIXES)

    def islower(self, text: str) -> bool:
        return self._lower.issuperset(text)

    def isanyalpha(self, text: str) -> bool:
        return not self._alpha.isdisjoint(text)

    def handles_nonbreaking_prefixes(self, text: str) -> str:
        # The same decisions as sacremoses (tokenize.py, `handles_nonbreaking_prefixes`). Its test
        # `re.search(r"^(\S+)\.$", token)` on a token of `str.split()` (no whitespace, which is what
        # `\S` excludes) is `len(token) > 1 and token.endswith(".")`.
        tokens = text.split()
        num_tokens = len(tokens)
        for i, token in enumerate(tokens):
            if len(token) < 2 or token[-1] != ".":
                continue
            prefix = token[:-1]
            if (
                ("." in prefix and self.isanyalpha(prefix))
                or (prefix in self._nonbreaking and prefix not in self._numeric_only)
                or (i != num_tokens - 1 and tokens[i + 1] and self.islower(tokens[i + 1][0]))
            ):
                continue
            if prefix in self._numeric_only and i + 1 < num_tokens and "0" <= tokens[i + 1][:1] <= "9":
                continue
            tokens[i] = prefix + " ."
        return " ".join(tokens)


@cache
def moses_rules_fallback(lang: str) -> str | None:
    """The language whose Moses nonbreaking prefixes stand in for `lang`'s, or None if sacremoses has its own.

    sacremoses silently uses English's list for a language it has none for (ar, ja, zh_yue, ...), so
    `Dr.` or `p.` may end a sentence where the language would not; this logs one warning per language
    and process. Segmented languages (zh, ja, th) do not use the Moses tokenizer and are never warned about.
    """
    if lang in SEGMENTER_LANGS or lang in NonbreakingPrefixes().available_langs:
        return None
    logger.warning("tokenizing %s: sacremoses has no Moses nonbreaking-prefix rules for it; using English's (en)", lang)
    return "en"


@cache
def _moses(lang: str) -> tuple[_PunctNormalizer, _MosesTokenizer]:
    """One normaliser/tokenizer pair per language and process (building them loads regex tables)."""
    return _PunctNormalizer(lang), _MosesTokenizer(lang)


@cache
def _jieba() -> Any:
    try:
        import jieba
    except ImportError as error:
        raise ValueError("tokenizing zh needs jieba: pip install jieba==0.42.1") from error
    jieba.setLogLevel(logging.WARNING)  # else it logs its dictionary loading on every process start
    segmenter = jieba.Tokenizer()
    segmenter.initialize()
    return segmenter


@cache
def _fugashi() -> Any:
    try:
        import fugashi
    except ImportError as error:
        raise ValueError("tokenizing ja needs fugashi and unidic-lite: pip install fugashi unidic-lite") from error
    return fugashi.Tagger("-Owakati")


@cache
def _thai() -> Callable[[str], list[str]]:
    try:
        from pythainlp.tokenize import word_tokenize
    except ImportError as error:
        raise ValueError("tokenizing th needs pythainlp: pip install pythainlp") from error
    return functools.partial(word_tokenize, engine="newmm", keep_whitespace=True)


def _segment_zh(text: str, normalizer: _PunctNormalizer) -> str:
    # XLM (Stanford segmenter) and transformers (rjieba) both segment first, then normalise; no Moses tokenizer.
    return normalizer.normalize(" ".join(_jieba().cut(text)))


def _segment_ja(text: str, normalizer: _PunctNormalizer) -> str:
    # XLM: normalise, then `kytea -notags` (no model offline); fugashi + unidic-lite in its place.
    return _fugashi().parse(normalizer.normalize(text))


def _segment_th(text: str, normalizer: _PunctNormalizer) -> str:
    # XLM tools/segment_th.py and transformers: normalise, then pythainlp word_tokenize (newmm). Its
    # whitespace tokens (keep_whitespace=True) vanish in the final whitespace collapse.
    return " ".join(_thai()(normalizer.normalize(text)))


_SEGMENTERS: dict[str, Callable[[str, _PunctNormalizer], str]] = {
    "zh": _segment_zh,
    "ja": _segment_ja,
    "th": _segment_th,
}
assert frozenset(_SEGMENTERS) == SEGMENTER_LANGS


def _collapse_whitespace(text: str) -> str:
    # str.split() without arguments splits on every Unicode whitespace (NBSP, U+3000, tabs, \r, U+2028).
    return " ".join(text.split())


def lowercase_and_remove_accent(text: str) -> str:
    """XLM's lowercase_and_remove_accent (lower, NFD, drop Mn, lower), followed by NFC.

    NFC recomposes what survives the accent removal (e.g. Hangul jamo) so equal words have one
    byte form; for Latin, Greek and Cyrillic text the result equals XLM's exactly.
    """
    if text.isascii():  # no combining marks, NFD and NFC are the identity
        return text.lower()
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(char for char in text if unicodedata.category(char) != "Mn").lower()
    return unicodedata.normalize("NFC", text)


def normalize_and_tokenize(line: str, lang: str, *, lowercase: bool) -> str:
    """Tokenize one line of `lang` text; returns tokens joined by single spaces ('' for a blank line).

    zh, ja and th go through their word segmenters (jieba, fugashi + unidic-lite, pythainlp newmm),
    every other language through the Moses tokenizer; all share XLM's punctuation normalisation.
    """
    text = _collapse_whitespace(line)
    if not text:
        return ""
    normalizer, tokenizer = _moses(lang)
    segment = _SEGMENTERS.get(lang)
    if segment is not None:
        text = segment(text, normalizer)
    else:
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
    waits forever for the lost chunk, while the executor raises BrokenProcessPool. The pool uses the
    forkserver context (`process_pool`): the caller may hold threads (Prefect, Ray) that make fork
    unsafe, and spawn would re-import this package (torch included, seconds) in every worker of every
    call. The fork server starts once per process with this module imported; workers, forked from it,
    end with the calling process even when it is killed.
    """
    with process_pool(workers, preload=[__name__]) as pool:
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
                "a tokenization worker process died or could not start (killed, out of memory?); "
                "lower tokenization.workers"
            ) from error


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
    if workers < 1 or chunk_lines < 1:
        raise ValueError(f"tokenize_file: workers ({workers}) and chunk_lines ({chunk_lines}) must be >= 1")
    in_path, out_path = Path(in_path), Path(out_path)
    if not in_path.is_file():
        raise ValueError(f"tokenize_file: input {in_path} does not exist; run the split stage first")
    moses_rules_fallback(lang)
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
