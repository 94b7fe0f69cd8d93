"""Deterministic train/valid/test split of line-aligned text files.

XLM shuffled whole corpora with `shuf` and cut the last 10k lines. Here the held-out line indices
are drawn with a seeded numpy permutation and the inputs are streamed once, so the split is
reproducible, needs no memory for the text, and keeps the sides of a parallel corpus aligned
(the same indices are used for every input). Lines keep their corpus order inside each split.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xlm_core.io import ProgressLog, atomic_open

__all__ = ["SplitError", "count_lines", "split_lines"]

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
    if not inputs:
        raise SplitError("split_lines needs at least one input file")
    unknown = set(outputs) - set(SPLIT_IDS)
    if unknown:
        raise SplitError(f"unknown split names {sorted(unknown)}; use train, valid and test")
    for name, paths in outputs.items():
        if len(paths) != len(inputs):
            raise SplitError(f"outputs[{name!r}] has {len(paths)} paths for {len(inputs)} inputs; give one per input")
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

    progress = ProgressLog(f"split {inputs[0].name}", unit="lines", total=num_lines, log=logger)
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
    logger.info("split %s: %s", ", ".join(str(p) for p in inputs), sizes)
    return {"lines": num_lines, **sizes}
