"""Training-side readers over memory-mapped binarized sets (docs/CONTRACTS.md "Batches").

- `StreamDataset`: monolingual CLM/MLM stream batches `tokens_BT`, contiguous slices of the
  EOS-prefixed token stream; each rank owns a disjoint contiguous range of the slices.
- `ParallelDataset`: TLM sentence-pair batches grouped by length; each rank owns a disjoint
  strided subset of the pairs. Empty pairs and pairs with a side above the given `max_len` (the
  split's limit, `config.limits.pair_max_len`) are removed (`xlm_core.data.length_filter`);
  `counts` says how many.

Both are infinite, reshuffled each epoch from `(seed, rank, epoch)`, and resume exactly from
`state_dict()`. `eval_batches()` is finite, unshuffled and unsharded. Nothing loads a corpus into
RAM; only per-sentence lengths (int64) are held.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from xlm_core.data.binarize import BinarizedSet
from xlm_core.data.dictionary import EOS_INDEX, PAD_INDEX
from xlm_core.data.length_filter import filter_pairs

__all__ = ["ParallelDataset", "SentenceBatch", "StreamDataset", "batch_sentences", "sampling_probs"]

logger = logging.getLogger(__name__)

SentenceBatch = tuple[torch.Tensor, torch.Tensor]  # (tokens_BT, lengths_B)


def sampling_probs(counts: dict[str, int], alpha: float) -> dict[str, float]:
    """XLM's language sampling: q_i = p_i^α / Σ_j p_j^α with p_i = n_i / Σ_j n_j; α = -1 is uniform."""
    if not counts:
        raise ValueError("sampling_probs: no languages/pairs given")
    if alpha == -1:
        return {key: 1.0 / len(counts) for key in counts}
    if not alpha > 0:
        raise ValueError(f"sampling alpha must be > 0 or exactly -1 (uniform); got {alpha}")
    values = np.array([counts[key] for key in counts], dtype=np.float64)
    if (values < 0).any() or values.sum() == 0:
        raise ValueError(f"sampling_probs: counts must be >= 0 with a positive total; got {counts}")
    q = (values / values.sum()) ** alpha
    q /= q.sum()
    return {key: float(prob) for key, prob in zip(counts, q, strict=True)}


def batch_sentences(sentences: Sequence[np.ndarray]) -> SentenceBatch:
    """Rows `</s> w1 … wn </s> <pad>…` (int64) and lengths n+2."""
    lengths = np.array([len(s) + 2 for s in sentences], dtype=np.int64)
    tokens = np.full((len(sentences), int(lengths.max(initial=2))), PAD_INDEX, dtype=np.int64)
    tokens[:, 0] = EOS_INDEX
    for row, sentence in enumerate(sentences):
        tokens[row, 1 : len(sentence) + 1] = sentence
        tokens[row, len(sentence) + 1] = EOS_INDEX
    return torch.from_numpy(tokens), torch.from_numpy(lengths)


def _epoch_rng(seed: int, rank: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, rank, epoch])


def _check_state(name: str, state: dict[str, Any], expected: dict[str, Any]) -> None:
    for key, value in expected.items():
        if state.get(key) != value:
            raise ValueError(
                f"{name}.load_state_dict: saved {key}={state.get(key)!r} but this dataset has "
                f"{value!r}; resume with the same data, batch settings and world size"
            )


class StreamDataset:
    """Infinite shuffled stream batches for one monolingual set (an iterator of `tokens_BT`)."""

    def __init__(
        self, bset: BinarizedSet, *, batch_size: int, bptt: int, rank: int = 0, world_size: int = 1, seed: int = 0
    ) -> None:
        if batch_size < 1 or bptt < 1:
            raise ValueError(f"StreamDataset: batch_size ({batch_size}) and bptt ({bptt}) must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"StreamDataset: rank {rank} outside world_size {world_size}")
        self.bset, self.batch_size, self.bptt = bset, batch_size, bptt
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.stream_len = int(bset.tokens.shape[0]) + 1  # the stream starts with one EOS
        self.num_chunks = self.stream_len // bptt
        self.chunk_lo = rank * self.num_chunks // world_size
        self.chunk_hi = (rank + 1) * self.num_chunks // world_size
        self.batches_per_epoch = (self.chunk_hi - self.chunk_lo) // batch_size
        self.epoch, self.position = 0, 0
        self._perm: np.ndarray | None = None

    def __iter__(self) -> StreamDataset:
        return self

    def __next__(self) -> torch.Tensor:
        # Checked here, not in __init__: a small valid/test set is still fine for eval_batches().
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"StreamDataset {self.bset.prefix}: {self.stream_len} tokens give rank {self.rank}/{self.world_size} "
                f"only {self.chunk_hi - self.chunk_lo} rows of bptt={self.bptt}, fewer than "
                f"batch_size={self.batch_size}; lower the batch size or bptt, or add data"
            )
        if self.position == self.batches_per_epoch:
            self.epoch, self.position, self._perm = self.epoch + 1, 0, None
        if self._perm is None:
            rng = _epoch_rng(self.seed, self.rank, self.epoch)
            self._perm = self.chunk_lo + rng.permutation(self.chunk_hi - self.chunk_lo)
        chunks = self._perm[self.position * self.batch_size : (self.position + 1) * self.batch_size]
        self.position += 1
        return self._read(chunks * self.bptt, self.bptt)

    def _read(self, starts: np.ndarray, length: int) -> torch.Tensor:
        """Rows stream[s : s+length] for each start s; stream[0] is the prefix EOS, stream[p] = tokens[p-1]."""
        index = starts[:, None] + np.arange(length)[None, :] - 1
        rows = np.asarray(self.bset.tokens[np.maximum(index, 0)], dtype=np.int64)
        rows[index < 0] = EOS_INDEX
        return torch.from_numpy(rows)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, **self._identity()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_state("StreamDataset", state, self._identity())
        if not 0 <= state["position"] <= self.batches_per_epoch:
            raise ValueError(f"StreamDataset.load_state_dict: position {state['position']} out of range")
        self.epoch, self.position, self._perm = int(state["epoch"]), int(state["position"]), None

    def _identity(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "bptt": self.bptt,
            "stream_len": self.stream_len,
        }

    def eval_batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Every token once, in order, unsharded: full `(≤batch_size, bptt)` batches, then the
        stream's tail (if ≥ 2 tokens) as a `(1, tail)` batch."""
        if batch_size < 1:
            raise ValueError(f"eval_batches: batch_size must be >= 1 (got {batch_size})")
        for first in range(0, self.num_chunks, batch_size):
            chunks = np.arange(first, min(first + batch_size, self.num_chunks), dtype=np.int64)
            yield self._read(chunks * self.bptt, self.bptt)
        tail = self.stream_len - self.num_chunks * self.bptt
        if tail >= 2:
            yield self._read(np.array([self.num_chunks * self.bptt], dtype=np.int64), tail)


class ParallelDataset:
    """Infinite length-grouped sentence-pair batches: `((x1_BT, len1_B), (x2_BT, len2_B))`."""

    def __init__(
        self,
        set1: BinarizedSet,
        set2: BinarizedSet,
        *,
        tokens_per_batch: int | None = None,
        batch_size: int = 32,
        max_len: int = 100,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        if len(set1) != len(set2):
            raise ValueError(
                f"ParallelDataset: {set1.prefix} has {len(set1)} sentences but {set2.prefix} has "
                f"{len(set2)}; the two sides must be line-aligned (re-run split/binarize)"
            )
        if batch_size < 1 or (tokens_per_batch is not None and tokens_per_batch < 1):
            raise ValueError(
                f"ParallelDataset: batch_size ({batch_size}) and tokens_per_batch ({tokens_per_batch}) must be >= 1"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"ParallelDataset: rank {rank} outside world_size {world_size}")
        self.set1, self.set2 = set1, set2
        self.tokens_per_batch, self.batch_size, self.max_len = tokens_per_batch, batch_size, max_len
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.len1, self.len2 = np.asarray(set1.lengths), np.asarray(set2.lengths)
        # One rule for every split (xlm_core.data.length_filter): empty pairs and pairs with a side
        # longer than this split's max_len are removed and counted.
        self.pairs, self.counts = filter_pairs(self.len1, self.len2, max_len)
        self.num_train_pairs = len(self.pairs)  # over all ranks: use this for sampling weights (same on every rank)
        self.local = self.pairs[rank::world_size]
        logger.info(
            "ParallelDataset %s/%s: %d pairs, removed %d empty and %d longer than max_len=%s, %d kept, "
            "%d on rank %d/%d",
            set1.prefix.name,
            set2.prefix.name,
            self.counts.pairs,
            self.counts.removed_empty,
            self.counts.removed_long,
            max_len,
            self.counts.kept,
            len(self.local),
            rank,
            world_size,
        )
        if self.counts.kept == 0:
            logger.warning("ParallelDataset %s: no pair is left after filtering", set1.prefix)
        self.epoch, self.position = 0, 0
        self._batches: list[np.ndarray] | None = None

    def __len__(self) -> int:
        """Training pairs on this rank."""
        return len(self.local)

    def _epoch_batches(self) -> list[np.ndarray]:
        rng = _epoch_rng(self.seed, self.rank, self.epoch)
        order = rng.permutation(self.local)
        # Stable sort of a random permutation: equal-length pairs land in random order each epoch.
        order = order[np.argsort(self.len1[order] + self.len2[order] + 4, kind="stable")]
        if self.tokens_per_batch is None:
            batches = np.array_split(order, -(-len(order) // self.batch_size))
        else:
            batches = self._split_by_tokens(order)
        return [batches[i] for i in rng.permutation(len(batches))]

    def _split_by_tokens(self, order: np.ndarray) -> list[np.ndarray]:
        """Cut the length-sorted `order` as the original's `get_iterator` with `tokens_per_batch`: it
        counts real tokens, not padding. A pair weighs len1 + len2 + 4 (both sides with their two
        `</s>`, the TLM row's length); batch k holds the pairs whose running sum, divided by
        tokens_per_batch, is k (so a batch holds about tokens_per_batch real tokens, a pair longer
        than the budget forms its own batch)."""
        assert self.tokens_per_batch is not None
        batch_ids = np.cumsum(self.len1[order] + self.len2[order] + 4) // self.tokens_per_batch
        _, bounds = np.unique(batch_ids, return_index=True)
        return np.split(order, bounds[1:])

    def __iter__(self) -> ParallelDataset:
        return self

    def __next__(self) -> tuple[SentenceBatch, SentenceBatch]:
        # Checked here, not in __init__: eval_batches() needs no training pairs.
        if len(self.local) == 0:
            raise ValueError(
                f"ParallelDataset {self.set1.prefix}: no training pairs for rank {self.rank}/"
                f"{self.world_size} after dropping empty pairs and pairs longer than "
                f"max_len={self.max_len}; raise max_len or add data"
            )
        if self._batches is None:
            self._batches = self._epoch_batches()
        if self.position == len(self._batches):
            self.epoch, self.position = self.epoch + 1, 0
            self._batches = self._epoch_batches()
        batch = self._batches[self.position]
        self.position += 1
        return self._make(batch)

    def _make(self, indices: np.ndarray) -> tuple[SentenceBatch, SentenceBatch]:
        indices = indices.tolist()
        return (
            batch_sentences([self.set1.sentence(i) for i in indices]),
            batch_sentences([self.set2.sentence(i) for i in indices]),
        )

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, **self._identity()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_state("ParallelDataset", state, self._identity())
        self.epoch, self.position, self._batches = int(state["epoch"]), int(state["position"]), None

    def _identity(self) -> dict[str, Any]:
        identity = {
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "tokens_per_batch": self.tokens_per_batch,
            "max_len": self.max_len,
            "num_pairs": len(self.local),
        }
        if self.tokens_per_batch is not None:
            # Token budgets once counted padded sizes: such a saved position would name other batches.
            identity["budget_counts"] = "real tokens"
        return identity

    def eval_batches(self, batch_size: int) -> Iterator[tuple[SentenceBatch, SentenceBatch]]:
        """The kept pairs (as for training: non-empty, no side above max_len) in file order, unsharded,
        `batch_size` per batch."""
        if batch_size < 1:
            raise ValueError(f"eval_batches: batch_size must be >= 1 (got {batch_size})")
        for first in range(0, len(self.pairs), batch_size):
            yield self._make(self.pairs[first : first + batch_size])
