"""Which sentence pairs reach the model: one rule for every split, shared by training and the data stages.

A pair is removed when either side is empty (no tokens after binarization) or when either side has
more than the split's `max_len` tokens: `objectives.max_len` for train (as the original XLM), and
for valid/test `objectives.eval_max_len`, by default the position table's bound (the original keeps
every valid/test pair, so a longer one would index past the positions; here it is removed and
counted instead). So no batch of any split can hold a side longer than the positions allow
(`PipelineConfig` checks both limits against `model.max_position_embeddings`). Pairs are removed,
never truncated. `max_len` of 0 or None keeps pairs of any length (empty ones still go).

The data stages write the counts per pair and split to `bin/<split>.<pair>.pairs.json`
(`pair_stats`); the training datasets apply the same rule with `filter_pairs` when they load.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xlm_core.io import atomic_open

__all__ = ["PairCounts", "filter_pairs", "pair_stats", "write_pair_stats"]


@dataclass(frozen=True)
class PairCounts:
    """How many pairs a set had, how many were removed and why (the two reasons never overlap)."""

    pairs: int
    removed_empty: int  # at least one side empty
    removed_long: int  # both sides non-empty, at least one longer than max_len
    kept: int
    max_len: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metrics(self, stem: str) -> dict[str, float]:
        """`<stem>_pairs`, `<stem>_removed_empty`, `<stem>_removed_long`, `<stem>_kept`."""
        return {
            f"{stem}_{key}": float(getattr(self, key)) for key in ("pairs", "removed_empty", "removed_long", "kept")
        }


def filter_pairs(len1: np.ndarray, len2: np.ndarray, max_len: int | None) -> tuple[np.ndarray, PairCounts]:
    """Indices (int64, file order) of the pairs kept, and the counts of what was removed.

    Args:
        len1, len2: per-pair side lengths in tokens (EOS excluded), same length.
        max_len: longest side kept; 0 or None: no length limit.
    """
    len1, len2 = np.asarray(len1), np.asarray(len2)
    if len1.shape != len2.shape:
        raise ValueError(f"filter_pairs: sides have {len1.shape} and {len2.shape} lengths; they must be aligned")
    non_empty = (len1 > 0) & (len2 > 0)
    keep = non_empty
    if max_len:
        keep = non_empty & (len1 <= max_len) & (len2 <= max_len)
    kept = np.flatnonzero(keep).astype(np.int64)
    n_non_empty = int(np.count_nonzero(non_empty))
    counts = PairCounts(
        pairs=int(len1.shape[0]),
        removed_empty=int(len1.shape[0]) - n_non_empty,
        removed_long=n_non_empty - len(kept),
        kept=len(kept),
        max_len=int(max_len) if max_len else None,
    )
    return kept, counts


def pair_stats(len1: np.ndarray, len2: np.ndarray, max_len: int | None) -> dict[str, Any]:
    """The counts of `filter_pairs` plus the longest side among all and among kept pairs."""
    kept, counts = filter_pairs(len1, len2, max_len)
    longest = np.maximum(np.asarray(len1), np.asarray(len2))
    return counts.as_dict() | {
        "longest_side": int(longest.max(initial=0)),
        "longest_kept_side": int(longest[kept].max(initial=0)),
    }


def write_pair_stats(path: str | Path, stats: dict[str, Any]) -> None:
    with atomic_open(Path(path), "w") as handle:
        json.dump(stats, handle, indent=2)
        handle.write("\n")
