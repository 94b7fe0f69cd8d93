"""BPE with the fastBPE C++ binary (`fast learnbpe | applybpe | getvocab`), plus the paper's
multinomial language sampling for the BPE training sample (q_i ∝ p_i^α).

fastBPE words are separated by `' '` and `'\\n'` only; the tokenizer stage guarantees that is the
only whitespace left, so fastBPE, the dictionary and `binarize` all see the same words.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np

from xlm_core.io import ProgressLog, atomic_open, atomic_path

__all__ = ["apply_bpe", "count_lines", "fast_binary", "get_vocab", "learn_bpe", "sample_for_bpe"]

logger = logging.getLogger(__name__)

_COPY_BLOCK = 1 << 20


def fast_binary() -> Path:
    """The fastBPE `fast` executable: $XLM_FASTBPE_BIN, else `fast` beside the Python executable, else PATH."""
    env = os.environ.get("XLM_FASTBPE_BIN")
    if env:
        path = Path(env)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ValueError(
                f"XLM_FASTBPE_BIN={env} is not an executable file; unset it or point it at fastBPE's `fast`"
            )
        return path
    beside = Path(sys.executable).parent / "fast"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("fast")
    if found:
        return Path(found)
    raise ValueError(
        f"fastBPE binary `fast` not found (not beside {sys.executable}, not on PATH); run `make install`, "
        "which compiles it into the virtual environment, or set XLM_FASTBPE_BIN"
    )


def _run_fast(args: list[str], *, stdout_path: Path | None = None, stdin_paths: list[Path] | None = None) -> None:
    """Run `fast args…`; stdout to `stdout_path` (else discarded), stdin fed from `stdin_paths`."""
    cmd = [str(fast_binary()), *args]
    logger.debug("running %s", " ".join(cmd))
    # stderr goes to a file, not a pipe: fastBPE logs there and a full pipe would block it
    # while we are still writing its stdin.
    with tempfile.TemporaryFile() as err, open(stdout_path, "wb") if stdout_path else open(os.devnull, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE if stdin_paths else subprocess.DEVNULL, stdout=out, stderr=err
        )
        if stdin_paths:
            assert proc.stdin is not None
            try:
                for path in stdin_paths:
                    _copy_with_final_newline(path, proc.stdin)
            except BrokenPipeError:
                pass  # the process died; its return code and stderr tell why
            finally:
                proc.stdin.close()
        returncode = proc.wait()
        if returncode != 0:
            err.seek(0)
            message = err.read().decode("utf-8", "replace").strip()[-2000:]
            raise RuntimeError(f"`{' '.join(cmd)}` failed with exit status {returncode}: {message}")


def _copy_with_final_newline(path: Path, dest: BinaryIO) -> None:
    last = b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(_COPY_BLOCK):
            dest.write(block)
            last = block[-1:]
    if last != b"\n":
        dest.write(b"\n")  # else the last word of one file would fuse with the first of the next


def _require_final_newline(path: Path, what: str) -> bool:
    """True if `path` has content; raise if it does not end with a newline (fastBPE drops the last word)."""
    size = path.stat().st_size
    if size == 0:
        return False
    with open(path, "rb") as handle:
        handle.seek(size - 1)
        if handle.read(1) != b"\n":
            raise ValueError(
                f"{what}: {path} does not end with a newline, so fastBPE would drop its last word; "
                "produce it with tokenize_file or append a newline"
            )
    return True


def count_lines(path: str | Path) -> int:
    """Number of lines (a final line without newline counts)."""
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(_COPY_BLOCK):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def sample_for_bpe(
    inputs: dict[str, Path | list[Path]], out_path: str | Path, *, sample_size: int, alpha: float, seed: int
) -> dict[str, int]:
    """Write a BPE training sample of `sample_size` lines drawn across languages.

    A language's text may span several files (its Wikipedia and the sides of its parallel corpora):
    they are read as one concatenation, without copying them.

    Language i has p_i = n_i / Σ n_j (line counts) and is sampled with q_i = p_i^α / Σ_j p_j^α
    (XLM paper, α = 0.5 boosts low-resource languages). The per-language line counts are one
    multinomial draw; lines are drawn without replacement unless a language needs more than it
    has. Deterministic in `seed`; lines are written per language (sorted), in file order.

    Returns:
        Lines written per language.
    """
    if sample_size < 1:
        raise ValueError(f"sample_for_bpe: sample_size must be >= 1 (got {sample_size}); set bpe.sample_size")
    if not inputs:
        raise ValueError("sample_for_bpe: no input files; data.mono_langs must list at least one language")
    files = {
        lang: [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        for lang, paths in inputs.items()
    }
    langs = sorted(files)
    line_counts = {lang: sum(count_lines(path) for path in files[lang]) for lang in langs}
    if all(count == 0 for count in line_counts.values()):
        raise ValueError(f"sample_for_bpe: every input is empty: {[str(p) for lang in langs for p in files[lang]]}")
    probs = _alpha_probs(np.array([line_counts[lang] for lang in langs], dtype=np.float64), alpha)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(sample_size, probs)
    written: dict[str, int] = {}
    progress = ProgressLog("BPE sample", total=sample_size, log=logger)
    with atomic_open(out_path, "wb") as out:
        for lang, n_draw in zip(langs, draws, strict=True):
            n_lines, n_draw = line_counts[lang], int(n_draw)
            if n_draw == 0 or n_lines == 0:
                written[lang] = 0
                continue
            if n_draw <= n_lines:
                picks = np.sort(rng.choice(n_lines, size=n_draw, replace=False))
            else:
                logger.warning(
                    "BPE sample: %s has %d lines but %d were drawn; sampling with replacement", lang, n_lines, n_draw
                )
                picks = np.sort(rng.integers(0, n_lines, size=n_draw))
            written[lang] = _write_picked_lines(files[lang], picks, out)
            progress.update(written[lang])
            logger.info(
                "BPE sample: %s %d/%d lines (p=%.4f, q=%.4f)",
                lang,
                written[lang],
                n_lines,
                line_counts[lang] / sum(line_counts.values()),
                probs[langs.index(lang)],
            )
    progress.done()
    return written


def _lines(paths: list[Path]) -> Iterator[bytes]:
    for path in paths:
        with open(path, "rb") as handle:
            yield from handle


def _write_picked_lines(paths: list[Path], picks: np.ndarray, out: BinaryIO) -> int:
    """Write line `k` of the concatenation of `paths` once per occurrence of k in the sorted `picks`."""
    written, cursor = 0, 0
    for number, raw in enumerate(_lines(paths)):
        if cursor == len(picks):
            break
        if picks[cursor] != number:
            continue
        line = raw if raw.endswith(b"\n") else raw + b"\n"
        while cursor < len(picks) and picks[cursor] == number:
            out.write(line)
            cursor += 1
            written += 1
    return written


def _alpha_probs(counts: np.ndarray, alpha: float) -> np.ndarray:
    if not alpha > 0:
        raise ValueError(f"sampling alpha must be > 0 (got {alpha}); set bpe.sample_alpha in (0, 1]")
    p = counts / counts.sum()
    q = p**alpha
    return q / q.sum()


def learn_bpe(sample_path: str | Path, codes_path: str | Path, n_codes: int) -> int:
    """`fast learnbpe n_codes sample > codes`; returns the number of merges kept.

    When the sample runs out of pairs, learnbpe pads the codes with repeated zero-count pairs,
    which `applybpe` then rejects (duplicate-code assertion); those lines are dropped.
    """
    sample_path = Path(sample_path)
    if n_codes < 1:
        raise ValueError(f"learn_bpe: n_codes must be >= 1 (got {n_codes}); set bpe.codes")
    if not _require_final_newline(sample_path, "learn_bpe"):
        raise ValueError(f"learn_bpe: sample {sample_path} is empty; check the BPE sampling stage inputs")
    with atomic_path(codes_path) as tmp:
        raw = Path(f"{tmp}.raw")
        try:
            _run_fast(["learnbpe", str(n_codes), str(sample_path)], stdout_path=raw)
            kept = 0
            with open(raw, "rb") as src, open(tmp, "wb") as dst:
                for line in src:
                    if line.rstrip(b"\n").endswith(b" 0"):
                        break
                    dst.write(line)
                    kept += 1
        finally:
            raw.unlink(missing_ok=True)
    if kept < n_codes:
        logger.warning("learn_bpe: the sample supports only %d merges (asked for %d)", kept, n_codes)
    logger.info("learned %d BPE codes from %s -> %s", kept, sample_path, codes_path)
    return kept


def apply_bpe(
    in_path: str | Path,
    out_path: str | Path,
    codes_path: str | Path,
    *,
    workers: int = 2,
    shard_bytes: int = 1 << 30,
) -> dict[str, int]:
    """`fast applybpe` over line-aligned shards of at most about `shard_bytes`, `workers` at a time.

    fastBPE's file mode memory-maps its whole input and output and keeps every distinct word, so
    one call on a large file uses memory in proportion to the file; shards bound it. Sharding is not
    faster: fastBPE already uses every core within one call, and each shard re-splits the words it
    shares with the others (48 MB on 2 cores: 1.5 s in one call, 2.6–3.0 s in 8 MB shards), so the
    default shard is large and only files above 1 GiB are split. Each shard's
    output is byte-identical to the same lines' output in one call (BPE is per word and the
    separators are copied), and the shards are concatenated in order into a temporary file
    renamed into place, so a killed run leaves no output and a re-run gives the same bytes.

    Returns:
        `shards` and `bytes` (input size).
    """
    in_path, codes_path = Path(in_path), Path(codes_path)
    if not codes_path.is_file():
        raise ValueError(f"apply_bpe: codes file {codes_path} does not exist; run learn_bpe first")
    if not in_path.is_file():
        raise ValueError(f"apply_bpe: input {in_path} does not exist; run the tokenize stage first")
    if workers < 1 or shard_bytes < 1:
        raise ValueError(f"apply_bpe: workers ({workers}) and shard_bytes ({shard_bytes}) must be >= 1")
    spans = _line_aligned_spans(in_path, shard_bytes)
    with atomic_path(out_path) as tmp:
        if not _require_final_newline(in_path, "apply_bpe"):
            tmp.write_bytes(b"")  # fastBPE cannot memory-map an empty output
        elif len(spans) == 1:
            _run_fast(["applybpe", str(tmp), str(in_path), str(codes_path)])
        else:
            with tempfile.TemporaryDirectory(prefix=f".{Path(out_path).name}.shards-", dir=tmp.parent) as shard_dir:
                _apply_bpe_shards(in_path, Path(shard_dir), spans, codes_path, tmp, workers)
    logger.info("applied BPE %s -> %s (%d shards)", in_path, out_path, len(spans))
    return {"shards": len(spans), "bytes": spans[-1][1] if spans else 0}


def _line_aligned_spans(path: Path, shard_bytes: int) -> list[tuple[int, int]]:
    """`[start, end)` byte ranges of about `shard_bytes` each, every one ending after a newline."""
    size = path.stat().st_size
    spans: list[tuple[int, int]] = []
    start = 0
    with open(path, "rb") as handle:
        while start < size:
            end = min(start + shard_bytes, size)
            if end < size:
                handle.seek(end - 1)
                rest = handle.readline()  # up to and including the next newline
                end = end - 1 + len(rest)
            spans.append((start, end))
            start = end
    return spans


def _apply_bpe_shards(
    in_path: Path, shard_dir: Path, spans: list[tuple[int, int]], codes_path: Path, out: Path, workers: int
) -> None:
    """Copy each span to a shard file, BPE the shards `workers` at a time (fastBPE runs outside the GIL),
    then concatenate the outputs in order. At most `workers` shards exist on disk at once beyond those done."""

    def one(index: int) -> Path:
        start, end = spans[index]
        shard, result = shard_dir / f"{index:06d}.in", shard_dir / f"{index:06d}.bpe"
        with open(in_path, "rb") as src, open(shard, "wb") as dst:
            src.seek(start)
            remaining = end - start
            while remaining:
                block = src.read(min(_COPY_BLOCK, remaining))
                dst.write(block)
                remaining -= len(block)
        _run_fast(["applybpe", str(result), str(shard), str(codes_path)])
        shard.unlink()
        return result

    progress = ProgressLog(f"applybpe {in_path.name}", unit="shards", total=len(spans), log=logger)
    with ThreadPoolExecutor(max_workers=workers) as pool, open(out, "wb") as dst:
        pending: collections.deque[Future[Path]] = collections.deque()
        next_index = 0
        while next_index < len(spans) or pending:
            while next_index < len(spans) and len(pending) < workers:
                pending.append(pool.submit(one, next_index))
                next_index += 1
            result = pending.popleft().result()
            with open(result, "rb") as src:
                shutil.copyfileobj(src, dst, _COPY_BLOCK)
            result.unlink()
            progress.update()
    progress.done()


def get_vocab(inputs: list[Path], vocab_path: str | Path) -> int:
    """`cat inputs… | fast getvocab -` into `vocab_path` (`token count`, count-descending).

    Returns:
        Number of vocabulary entries.
    """
    if not inputs:
        raise ValueError("get_vocab: no input files; pass the BPE-applied training files")
    for path in inputs:
        if not Path(path).is_file():
            raise ValueError(f"get_vocab: input {path} does not exist; run apply_bpe first")
    with atomic_path(vocab_path) as tmp:
        _run_fast(["getvocab", "-"], stdout_path=tmp, stdin_paths=[Path(p) for p in inputs])
        n_entries = count_lines(tmp)
    logger.info("vocabulary of %d entries from %d files -> %s", n_entries, len(inputs), vocab_path)
    return n_entries
