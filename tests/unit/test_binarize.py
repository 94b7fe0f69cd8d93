"""Binarized sets: exact decode round trip, CONTRACTS.md layout, dtype choice, unknown counting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support.real_text import man_lines
from xlm_core.data import binarize as binarize_module
from xlm_core.data.binarize import binarize, binarized_paths, decode, load_binarized
from xlm_core.data.bpe import apply_bpe, get_vocab, learn_bpe
from xlm_core.data.dictionary import EOS_INDEX, NUM_SPECIALS, UNK_INDEX, Dictionary
from xlm_core.data.tokenize import normalize_and_tokenize


@pytest.fixture(scope="module")
def bpe_text(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(BPE'd real English text with a few blank lines, its fastBPE vocabulary)."""
    root = tmp_path_factory.mktemp("bin")
    lines = man_lines("en", 800, min_words=3)  # the pinned man pages
    tokenized = [normalize_and_tokenize(line, "en", lowercase=False) for line in lines]
    tokenized[10] = tokenized[500] = ""
    (root / "en.tok").write_text("".join(x + "\n" for x in tokenized), encoding="utf-8")
    learn_bpe(root / "en.tok", root / "codes", 300)
    apply_bpe(root / "en.tok", root / "en.bpe", root / "codes")
    get_vocab([root / "en.bpe"], root / "vocab")
    return root / "en.bpe", root / "vocab"


def test_round_trip_and_layout(bpe_text: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binarize_module, "_BLOCK_BYTES", 1000)  # many blocks on a small file
    text_path, vocab = bpe_text
    dico = Dictionary.from_vocab(vocab)
    stats = binarize(text_path, dico, tmp_path / "train.en")
    lines = text_path.read_text(encoding="utf-8").split("\n")[:-1]
    n_words = sum(len(line.split()) for line in lines)
    assert stats == {
        "sentences": len(lines),
        "tokens": n_words,
        "unk_tokens": 0,
        "unk_rate": 0.0,
        "empty_sentences": sum(1 for line in lines if not line.split()),
        "longest_sentence": max(len(line.split()) for line in lines),
        "dtype": "uint16",
        "vocab_size": len(dico),
    }
    assert json.loads((tmp_path / "train.en.stats.json").read_text()) == stats
    bset = load_binarized(tmp_path / "train.en")
    assert isinstance(bset.tokens, np.memmap)
    assert bset.tokens.dtype == np.uint16 and bset.tokens.shape == (n_words + len(lines),)
    assert bset.offsets.dtype == np.int64 and bset.offsets.shape == (len(lines), 2)
    assert len(bset) == len(lines)
    assert (bset.tokens[bset.offsets[:, 1]] == EOS_INDEX).all()
    assert (bset.offsets[1:, 0] == bset.offsets[:-1, 1] + 1).all() and bset.offsets[0, 0] == 0
    assert int((bset.tokens == EOS_INDEX).sum()) == len(lines)  # one EOS per line, none leading
    assert [decode(bset, dico, i) for i in range(len(bset))] == lines
    assert bset.lengths[10] == 0 and decode(bset, dico, 10) == ""
    assert not list(tmp_path.glob(".*tmp*"))


def test_unknown_words_counted(bpe_text: tuple[Path, Path], tmp_path: Path) -> None:
    text_path, vocab = bpe_text
    small = Dictionary.from_vocab(vocab, max_vocab=60)
    stats = binarize(text_path, small, tmp_path / "small")
    bset = load_binarized(tmp_path / "small")
    words = text_path.read_text(encoding="utf-8").split()
    expected_unk = sum(1 for w in words if w not in small)
    assert stats["unk_tokens"] == expected_unk == int((bset.tokens == UNK_INDEX).sum()) > 0
    assert stats["unk_rate"] == pytest.approx(expected_unk / len(words))


def test_dtype_int32_for_large_vocab(tmp_path: Path) -> None:
    words = [f"w{i}" for i in range(70000)]
    dico = Dictionary(words, list(range(70000, 0, -1)))
    (tmp_path / "t.bpe").write_text("w0 w69999 zzz\n\nw5\n", encoding="utf-8")
    stats = binarize(tmp_path / "t.bpe", dico, tmp_path / "big")
    bset = load_binarized(tmp_path / "big")
    assert stats["dtype"] == "int32" and bset.tokens.dtype == np.int32
    assert bset.tokens.tolist() == [14, 70013, UNK_INDEX, EOS_INDEX, EOS_INDEX, 19, EOS_INDEX]
    assert bset.offsets.tolist() == [[0, 3], [4, 4], [5, 6]]


def test_special_words_dropped_and_empty_file(tmp_path: Path) -> None:
    dico = Dictionary(["a"], [1])
    (tmp_path / "s.bpe").write_text("a </s> <unk> <pad> a\n", encoding="utf-8")
    binarize(tmp_path / "s.bpe", dico, tmp_path / "s")
    assert load_binarized(tmp_path / "s").tokens.tolist() == [14, UNK_INDEX, 14, EOS_INDEX]
    (tmp_path / "e.bpe").write_bytes(b"")
    assert binarize(tmp_path / "e.bpe", dico, tmp_path / "e")["sentences"] == 0
    assert len(load_binarized(tmp_path / "e")) == 0


def test_incomplete_set_refused(tmp_path: Path) -> None:
    dico = Dictionary(["a"], [1])
    (tmp_path / "s.bpe").write_text("a a\n", encoding="utf-8")
    binarize(tmp_path / "s.bpe", dico, tmp_path / "s")
    binarized_paths(tmp_path / "s")["stats"].unlink()
    with pytest.raises(ValueError, match="incomplete"):
        load_binarized(tmp_path / "s")


def test_blocks_equal_per_line_indexing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Block-vectorised indexing equals XLM-style per-line indexing (split on ' ', drop specials but <unk>),
    across block boundaries, with doubled spaces, blank lines, a missing final newline, and bad UTF-8."""
    dico = Dictionary(["a", "b@@", "c", "\u00a0d"], [4, 3, 2, 1])
    lines = ["a b@@ c", "", "a  c ", "<s> a <unk> zz", "\u00a0d a", " ", "c"] * 40
    (tmp_path / "t.bpe").write_bytes(("\n".join(lines)).encode())  # no final newline
    monkeypatch.setattr(binarize_module, "_BLOCK_BYTES", 7)
    stats = binarize(tmp_path / "t.bpe", dico, tmp_path / "t")
    bset = load_binarized(tmp_path / "t")
    expected = []
    for line in lines:
        ids = [dico.index(w) for w in line.split(" ") if w]
        expected.append([i for i in ids if i >= NUM_SPECIALS or i == UNK_INDEX])
    assert [bset.sentence(i).tolist() for i in range(len(bset))] == expected
    assert stats["unk_tokens"] == sum(ids.count(UNK_INDEX) for ids in expected)
    (tmp_path / "bad.bpe").write_bytes(b"a\nc\nb@@ \xff c\n")
    with pytest.raises(ValueError, match=r"bad\.bpe:3"):
        binarize(tmp_path / "bad.bpe", dico, tmp_path / "bad")
    assert not binarized_paths(tmp_path / "bad")["tokens"].exists()
