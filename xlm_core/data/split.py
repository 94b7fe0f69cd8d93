"""Deterministic train/valid/test splits of line-aligned text files, by line or by article.

XLM shuffled whole corpora with `shuf` and cut the last 10k lines. Here the held-out line indices
are drawn with a seeded numpy permutation and the inputs are streamed once, so the split is
reproducible, needs no memory for the text, and keeps the sides of a parallel corpus aligned
(the same indices are used for every input). Lines keep their corpus order inside each split.

`split_articles` splits a Wikipedia text by whole articles (their line counts come from the
extraction, `<lang>.docs`): articles are drawn in a seeded random order and go to valid until it holds
`valid_size` lines, then to test until it holds `test_size`, the rest to train, so no paragraph of a
held-out article is in train (a line-level split would put the other paragraphs of the same articles
in train). The last article drawn for a set may take it past its budget by less than one article.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xlm_core.io import ProgressLog, atomic_open

__all__ = ["SplitError", "count_lines", "read_article_sizes", "split_articles", "split_lines"]

logger = logging.getLogger(__name__)

SPLIT_IDS = {"train": 0, "valid": 1, "test": 2}


class SplitError(ValueError):
    """The inputs cannot be split (empty, misaligned, or bad output mapping)."""


def count_lines(path: Path) -> int:
    """Number of lines, counting a last line without a trailing newline."""
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def _held_out_sizes(num_lines: int, valid_size: int, test_size: int, source: Path) -> tuple[int, int]:
    if num_lines >= valid_size + test_size + 1:
        return valid_size, test_size
    cap = max(num_lines // 10, 1) if num_lines >= 3 else 0
    valid, test = min(valid_size, cap), min(test_size, cap)
    logger.warning(
        "%s has only %d lines, fewer than valid_size + test_size + 1 = %d; holding out %d valid and %d test "
        "lines instead (at most 10%% each). Lower data.valid_size/test_size to silence this.",
        source,
        num_lines,
        valid_size + test_size + 1,
        valid,
        test,
    )
    return valid, test


def split_lines(
    inputs: Sequence[Path], outputs: dict[str, Sequence[Path]], *, valid_size: int, test_size: int, seed: int
) -> dict:
    """Split line-aligned `inputs` into train/valid/test files.

    Args:
        inputs: one file, or several line-aligned files (the sides of a parallel corpus).
        outputs: split name (`train`, `valid`, `test`) -> paths parallel to `inputs`.
        valid_size, test_size: held-out lines; shrunk (with a warning) for small corpora.
        seed: seed of the permutation choosing the held-out lines.

    Returns:
        `{"lines": N, "train": n_train, "valid": n_valid, "test": n_test}`.
    """
    inputs = [Path(p) for p in inputs]
    _check_outputs(inputs, outputs)
    counts = [count_lines(path) for path in inputs]
    if len(set(counts)) != 1:
        listing = ", ".join(f"{path} ({n} lines)" for path, n in zip(inputs, counts, strict=True))
        raise SplitError(f"inputs are not line-aligned: {listing}")
    num_lines = counts[0]
    if num_lines == 0:
        raise SplitError(f"{inputs[0]} is empty: nothing to split (check the extraction/download stage)")
    valid, test = _held_out_sizes(num_lines, valid_size, test_size, inputs[0])

    assignment = np.zeros(num_lines, dtype=np.uint8)
    order = np.random.default_rng(seed).permutation(num_lines)
    assignment[order[:valid]] = SPLIT_IDS["valid"]
    assignment[order[valid : valid + test]] = SPLIT_IDS["test"]
    sizes = {name: int((assignment == split_id).sum()) for name, split_id in SPLIT_IDS.items()}

    _write_splits(inputs, outputs, assignment)
    logger.info("split %s: %s", ", ".join(str(p) for p in inputs), sizes)
    return {"lines": num_lines, **sizes}


def _check_outputs(inputs: Sequence[Path], outputs: dict[str, Sequence[Path]]) -> None:
    if not inputs:
        raise SplitError("split: needs at least one input file")
    unknown = set(outputs) - set(SPLIT_IDS)
    if unknown:
        raise SplitError(f"unknown split names {sorted(unknown)}; use train, valid and test")
    for name, paths in outputs.items():
        if len(paths) != len(inputs):
            raise SplitError(f"outputs[{name!r}] has {len(paths)} paths for {len(inputs)} inputs; give one per input")


def _write_splits(inputs: Sequence[Path], outputs: dict[str, Sequence[Path]], assignment: np.ndarray) -> None:
    """Stream the inputs once, each line to the split `assignment` gives it (in corpus order)."""
    progress = ProgressLog(f"split {inputs[0].name}", unit="lines", total=len(assignment), log=logger)
    with contextlib.ExitStack() as stack:
        readers = [stack.enter_context(open(path, "rb")) for path in inputs]
        # writers[split id][input index]; splits without outputs are read and dropped.
        writers: list[list | None] = [None, None, None]
        for name, paths in outputs.items():
            writers[SPLIT_IDS[name]] = [stack.enter_context(atomic_open(path, "wb")) for path in paths]
        for index, lines in enumerate(zip(*readers, strict=True)):
            targets = writers[assignment[index]]
            if targets is not None:
                for writer, line in zip(targets, lines, strict=True):
                    writer.write(line if line.endswith(b"\n") else line + b"\n")
            progress.update()
    progress.done()


def read_article_sizes(path: Path, num_lines: int) -> np.ndarray:
    """The line count of each article (one integer a line); they must add up to the text's `num_lines`."""
    path = Path(path)
    if not path.is_file():
        raise SplitError(f"{path} (the article line counts) is missing; re-run the extract stage")
    sizes = np.loadtxt(path, dtype=np.int64, ndmin=1) if path.stat().st_size else np.zeros(0, dtype=np.int64)
    if int(sizes.sum()) != num_lines or (sizes < 1).any():
        raise SplitError(
            f"{path}: the article line counts add up to {int(sizes.sum())} but the text has {num_lines} lines; "
            "re-run the extract (and clean) stage"
        )
    return sizes


def split_articles(
    text: Path,
    articles: Path,
    outputs: dict[str, Sequence[Path]],
    *,
    valid_size: int,
    test_size: int,
    seed: int,
) -> dict:
    """Split `text` into train/valid/test by whole articles (module docstring).

    Args:
        text: one paragraph per line, articles one after the other.
        articles: the line count of each article of `text`, one integer a line.
        outputs: split name -> `[path]`.
        valid_size, test_size: held-out line budgets; shrunk (with a warning) for small corpora, as in
            `split_lines`. A corpus of fewer than 3 articles holds nothing out.

    Returns:
        `{"lines", "train", "valid", "test", "articles", "train_articles", "valid_articles", "test_articles"}`.
    """
    text = Path(text)
    _check_outputs([text], outputs)
    num_lines = count_lines(text)
    if num_lines == 0:
        raise SplitError(f"{text} is empty: nothing to split (check the extraction and cleaning stages)")
    sizes = read_article_sizes(articles, num_lines)
    valid, test = _held_out_sizes(num_lines, valid_size, test_size, text) if len(sizes) >= 3 else (0, 0)
    article_split = np.zeros(len(sizes), dtype=np.uint8)
    order = np.random.default_rng(seed).permutation(len(sizes))
    drawn = 0
    for split_id, budget in ((SPLIT_IDS["valid"], valid), (SPLIT_IDS["test"], test)):
        taken = 0
        while taken < budget and drawn < len(sizes) - 1:  # at least one article stays in train
            article_split[order[drawn]] = split_id
            taken += int(sizes[order[drawn]])
            drawn += 1
    assignment = np.repeat(article_split, sizes)
    _write_splits([text], outputs, assignment)
    stats = {"lines": num_lines, "articles": len(sizes)}
    for name, split_id in SPLIT_IDS.items():
        stats[name] = int((assignment == split_id).sum())
        stats[f"{name}_articles"] = int((article_split == split_id).sum())
    logger.info("split %s by article: %s", text, stats)
    return stats
