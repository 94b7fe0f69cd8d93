"""Stream and parallel datasets: batch layout, rank sharding, exact resume, length grouping, sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xlm_core.data.binarize import BinarizedSet, binarize, load_binarized
from xlm_core.data.datasets import ParallelDataset, StreamDataset, batch_sentences, sampling_probs
from xlm_core.data.dictionary import EOS_INDEX, PAD_INDEX, Dictionary

N_WORDS = 3000
DICO = Dictionary([f"w{i}" for i in range(N_WORDS)], [N_WORDS - i for i in range(N_WORDS)])


def _make_set(path: Path, lines: list[list[int]]) -> BinarizedSet:
    path.with_suffix(".bpe").write_text(
        "".join(" ".join(f"w{i}" for i in line) + "\n" for line in lines), encoding="utf-8"
    )
    binarize(path.with_suffix(".bpe"), DICO, path)
    return load_binarized(path)


@pytest.fixture()
def mono(tmp_path: Path) -> BinarizedSet:
    """Every word distinct (w0, w1, … in order), so a row identifies its place in the stream."""
    rng = np.random.default_rng(0)
    lines, next_word = [], 0
    while next_word < 2500:
        n = int(rng.integers(0, 12))
        lines.append(list(range(next_word, min(next_word + n, N_WORDS))))
        next_word += n
    return _make_set(tmp_path / "train.en", lines)


def _stream(bset: BinarizedSet) -> np.ndarray:
    return np.concatenate([[EOS_INDEX], np.asarray(bset.tokens, dtype=np.int64)])


def test_stream_batches_are_stream_slices(mono: BinarizedSet) -> None:
    data = StreamDataset(mono, batch_size=4, bptt=16, seed=3)
    stream = _stream(mono)
    batch = next(data)
    assert batch.dtype == torch.int64 and batch.shape == (4, 16)
    starts = set(range(0, data.num_chunks * 16, 16))
    for row in batch.numpy():
        matches = [s for s in starts if (stream[s : s + 16] == row).all()]
        assert len(matches) == 1


def _epoch_rows(data: StreamDataset) -> list[tuple[int, ...]]:
    return [tuple(row) for _ in range(data.batches_per_epoch) for row in next(data).tolist()]


def test_stream_ranks_disjoint_and_cover(mono: BinarizedSet) -> None:
    world, stream = 3, _stream(mono)
    seen: list[set[tuple[int, ...]]] = []
    for rank in range(world):
        data = StreamDataset(mono, batch_size=5, bptt=8, rank=rank, world_size=world, seed=1)
        rows = _epoch_rows(data)
        assert len(rows) == len(set(rows)) == data.batches_per_epoch * 5
        owned = {tuple(stream[c * 8 : c * 8 + 8].tolist()) for c in range(data.chunk_lo, data.chunk_hi)}
        assert set(rows) <= owned
        seen.append(set(rows))
    for a in range(world):
        for b in range(a + 1, world):
            assert not seen[a] & seen[b]


def test_stream_reshuffles_each_epoch_and_resumes_exactly(mono: BinarizedSet) -> None:
    data = StreamDataset(mono, batch_size=4, bptt=32, seed=7)
    first = _epoch_rows(data)
    second = _epoch_rows(data)
    stream = _stream(mono)
    owned = {tuple(stream[c * 32 : c * 32 + 32].tolist()) for c in range(data.num_chunks)}
    assert first != second and len(set(first)) == len(first) == len(second) and set(first) | set(second) <= owned
    data = StreamDataset(mono, batch_size=4, bptt=32, seed=7)
    for _ in range(data.batches_per_epoch + 3):  # past an epoch boundary
        next(data)
    state = data.state_dict()
    expected = [next(data) for _ in range(data.batches_per_epoch)]
    resumed = StreamDataset(mono, batch_size=4, bptt=32, seed=7)
    resumed.load_state_dict(state)
    for want in expected:
        assert torch.equal(next(resumed), want)
    with pytest.raises(ValueError, match="batch_size"):
        StreamDataset(mono, batch_size=2, bptt=32, seed=7).load_state_dict(state)


def test_stream_eval_covers_every_token_in_order(mono: BinarizedSet) -> None:
    data = StreamDataset(mono, batch_size=4, bptt=30, rank=1, world_size=2)
    batches = list(data.eval_batches(7))
    assert all(b.shape[0] <= 7 and b.dtype == torch.int64 for b in batches)
    flat, stream = torch.cat([b.reshape(-1) for b in batches]).numpy(), _stream(mono)
    # every token, except a final 1-token tail (nothing to predict from it alone)
    assert len(stream) - 1 <= len(flat) <= len(stream) and np.array_equal(flat, stream[: len(flat)])
    assert all(torch.equal(a, b) for a, b in zip(batches, data.eval_batches(7), strict=True))


def test_stream_too_small_is_a_clear_error(mono: BinarizedSet) -> None:
    data = StreamDataset(mono, batch_size=1000, bptt=256)
    assert sum(b.numel() for b in data.eval_batches(1000)) == len(_stream(mono))  # eval still works
    with pytest.raises(ValueError, match="batch_size"):
        next(data)


@pytest.fixture()
def para(tmp_path: Path) -> tuple[BinarizedSet, BinarizedSet, list[list[int]], list[list[int]]]:
    rng = np.random.default_rng(1)
    side1, side2 = [], []
    for i in range(400):
        n1, n2 = int(rng.integers(0, 40)), int(rng.integers(1, 40))
        side1.append(list(rng.integers(0, N_WORDS, n1)))
        side2.append([i, *rng.integers(0, N_WORDS, n2 - 1)])  # first word = pair id
    side1[3], side2[5] = [], []
    return _make_set(tmp_path / "en", side1), _make_set(tmp_path / "fr", side2), side1, side2


def _pair_ids(batch: tuple) -> list[int]:
    x2 = batch[1][0]
    return [int(DICO.words[int(t)][1:]) for t in x2[:, 1]]  # side 2 starts with the pair id


def test_parallel_rows_lengths_and_token_budget(para: tuple) -> None:
    set1, set2, side1, side2 = para
    data = ParallelDataset(set1, set2, tokens_per_batch=400, max_len=30, seed=0)
    seen: list[int] = []
    sizes = set()
    for _ in range(60):
        (x1, len1), (x2, len2) = batch = next(data)
        assert x1.dtype == x2.dtype == len1.dtype == torch.int64 and x1.shape[0] == x2.shape[0] == len(len1)
        # The original counts real tokens (len1 + len2 per pair, both </s> pairs included, no padding):
        # the batch's running sum stays within one multiple of the budget, the first pair aside.
        assert int((len1 + len2).sum()) - int(len1[0] + len2[0]) < 400
        assert x1.shape[1] == int(len1.max()) and x2.shape[1] == int(len2.max())
        for x, lengths, side in ((x1, len1, side1), (x2, len2, side2)):
            for row, length, pid in zip(x.tolist(), lengths.tolist(), _pair_ids(batch), strict=True):
                assert row[:length] == [EOS_INDEX, *[w + 14 for w in side[pid]], EOS_INDEX]
                assert set(row[length:]) <= {PAD_INDEX}
        seen += _pair_ids(batch)
        sizes.add(x1.shape[0])
    assert len(sizes) > 3  # short pairs make bigger batches
    kept = [i for i in range(400) if side1[i] and side2[i] and len(side1[i]) <= 30 and len(side2[i]) <= 30]
    epoch = seen[: len(kept)]
    assert sorted(epoch) == kept  # each kept pair exactly once per epoch; empty/long pairs dropped


def test_token_budget_cuts_where_the_running_sum_of_real_lengths_crosses_it(para: tuple) -> None:
    """`get_iterator` of the original: batch id = cumsum(len1 + len2 + 4) // tokens_per_batch over the
    length-sorted pairs; padding is not counted, so a padded batch may exceed the budget."""
    set1, set2, _, _ = para
    data = ParallelDataset(set1, set2, tokens_per_batch=300, max_len=100, seed=0)
    order = data.pairs[np.argsort(data.len1[data.pairs] + data.len2[data.pairs] + 4, kind="stable")]
    expected: list[list[int]] = []
    running, current = 0, None
    for index in order.tolist():
        running += int(data.len1[index] + data.len2[index] + 4)
        if running // 300 != current:
            expected.append([])
            current = running // 300
        expected[-1].append(index)
    assert [b.tolist() for b in data._split_by_tokens(order)] == expected
    padded = [len(b) * (data.len1[b].max() + data.len2[b].max() + 4) for b in data._split_by_tokens(order)]
    assert max(padded) > 300  # the former padded-size budget would have cut these batches smaller
    # One training epoch cuts the same way: equal-length pairs tie in a random order, but the sequence of
    # lengths, hence every batch's lengths, is the same (the batches come shuffled).
    batches = [next(data) for _ in range(len(expected))]
    got = sorted(sorted((len1 + len2).tolist()) for (_, len1), (_, len2) in batches)
    assert got == sorted(sorted(int(data.len1[i] + data.len2[i] + 4) for i in b) for b in expected)


def test_parallel_fixed_batch_size_sharding_and_resume(para: tuple) -> None:
    set1, set2, side1, side2 = para
    shards = []
    for rank in range(2):
        data = ParallelDataset(set1, set2, batch_size=16, max_len=100, rank=rank, world_size=2, seed=5)
        ids = [i for _ in range(-(-len(data) // 16)) for i in _pair_ids(next(data))]
        assert sorted(ids) == sorted(set(ids)) and len(ids) == len(data)
        shards.append(set(ids))
    assert not shards[0] & shards[1]
    assert shards[0] | shards[1] == {i for i in range(400) if side1[i] and side2[i]}
    data = ParallelDataset(set1, set2, batch_size=16, seed=5)
    for _ in range(30):
        next(data)
    state = data.state_dict()
    expected = [next(data) for _ in range(10)]
    resumed = ParallelDataset(set1, set2, batch_size=16, seed=5)
    resumed.load_state_dict(state)
    for want in expected:
        got = next(resumed)
        assert all(torch.equal(a, b) for a, b in zip([*got[0], *got[1]], [*want[0], *want[1]], strict=True))


def test_parallel_eval_is_ordered_and_filtered_like_training(para: tuple) -> None:
    set1, set2, side1, side2 = para
    data = ParallelDataset(set1, set2, batch_size=8, max_len=5)
    ids = [i for batch in data.eval_batches(50) for i in _pair_ids(batch)]
    kept = [i for i in range(400) if side1[i] and side2[i] and len(side1[i]) <= 5 and len(side2[i]) <= 5]
    assert ids == kept and kept
    empty = sum(1 for i in range(400) if not side1[i] or not side2[i])
    assert (data.counts.pairs, data.counts.removed_empty, data.counts.kept) == (400, empty, len(kept))
    assert data.counts.removed_long == 400 - empty - len(kept)


def test_parallel_misaligned_sets_refused(para: tuple, tmp_path: Path) -> None:
    set1, _, _, _ = para
    other = _make_set(tmp_path / "short", [[1, 2]])
    with pytest.raises(ValueError, match="line-aligned"):
        ParallelDataset(set1, other)
    too_long = ParallelDataset(set1, para[1], max_len=1)
    assert too_long.counts.kept == 0 and list(too_long.eval_batches(100)) == []  # removed from evaluation too
    with pytest.raises(ValueError, match="max_len"):
        next(too_long)


def test_batch_sentences_layout() -> None:
    tokens, lengths = batch_sentences([np.array([20, 21, 22]), np.array([], dtype=np.int64), np.array([30])])
    assert tokens.tolist() == [[1, 20, 21, 22, 1], [1, 1, 2, 2, 2], [1, 30, 1, 2, 2]]
    assert lengths.tolist() == [5, 2, 3]


def test_sampling_probs() -> None:
    counts = {"en": 9000, "fr": 900, "de": 100}
    q = sampling_probs(counts, 0.5)
    p = np.array([0.9, 0.09, 0.01])
    np.testing.assert_allclose([q["en"], q["fr"], q["de"]], p**0.5 / (p**0.5).sum())
    assert sampling_probs(counts, 1.0) == pytest.approx({"en": 0.9, "fr": 0.09, "de": 0.01})
    assert sampling_probs(counts, -1) == pytest.approx({"en": 1 / 3, "fr": 1 / 3, "de": 1 / 3})
    rng = np.random.default_rng(0)
    draws = rng.choice(list(q), size=20000, p=list(q.values()))
    for lang in counts:
        assert abs((draws == lang).mean() - q[lang]) < 0.015
    with pytest.raises(ValueError, match="alpha"):
        sampling_probs(counts, 0.0)
