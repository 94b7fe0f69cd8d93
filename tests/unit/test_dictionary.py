"""XLM dictionary: fixed specials, fastBPE vocabulary reading rules, dict.txt round trip."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from xlm_core.data.dictionary import (
    BOS_INDEX,
    EOS_INDEX,
    MASK_INDEX,
    NUM_SPECIALS,
    PAD_INDEX,
    UNK_INDEX,
    Dictionary,
)

VOCAB = "the 50\nde 40\nth@@ 30\ne 30\nschön 7\nз@@ 2\n"


def _vocab(tmp_path: Path, text: str = VOCAB) -> Path:
    path = tmp_path / "vocab"
    path.write_text(text, encoding="utf-8")
    return path


def test_specials_fixed_at_0_to_13(tmp_path: Path) -> None:
    dico = Dictionary.from_vocab(_vocab(tmp_path))
    assert dico.words[:4] == ["<s>", "</s>", "<pad>", "<unk>"]
    assert dico.words[4:NUM_SPECIALS] == [f"<special{i}>" for i in range(10)]
    assert (BOS_INDEX, EOS_INDEX, PAD_INDEX, UNK_INDEX, MASK_INDEX, NUM_SPECIALS) == (0, 1, 2, 3, 5, 14)
    assert dico.words[MASK_INDEX] == "<special1>"
    assert dico.counts[:NUM_SPECIALS] == [0] * NUM_SPECIALS
    assert len(dico) == 20
    assert dico.index("the") == 14 and dico.index("з@@") == 19
    assert dico.index("never-seen") == UNK_INDEX
    assert dico.counts[14:] == [50, 40, 30, 30, 7, 2]


def test_malformed_and_duplicate_lines_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = "the 50\nbad line here 3\nde 40\nthe 39\nnocount\n<unk> 35\nx 2a\nsep\u2028x 30\ne 30\n"
    with caplog.at_level(logging.WARNING, logger="xlm_core.data.dictionary"):
        dico = Dictionary.from_vocab(_vocab(tmp_path, text))
    assert dico.words[NUM_SPECIALS:] == ["the", "de", "e"]
    for number in (2, 4, 5, 6, 7, 8):
        assert f"vocab:{number}:" in caplog.text


def test_count_order_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"vocab:3: .*count-descending"):
        Dictionary.from_vocab(_vocab(tmp_path, "a 5\nb 4\nc 9\n"))


def test_max_vocab_and_min_count(tmp_path: Path) -> None:
    path = _vocab(tmp_path)
    assert Dictionary.from_vocab(path, max_vocab=16).words[NUM_SPECIALS:] == ["the", "de"]
    assert Dictionary.from_vocab(path, min_count=30).words[NUM_SPECIALS:] == ["the", "de", "th@@", "e"]
    with pytest.raises(ValueError, match="max_vocab"):
        Dictionary.from_vocab(path, max_vocab=10)


def test_write_read_round_trip(tmp_path: Path) -> None:
    dico = Dictionary.from_vocab(_vocab(tmp_path))
    dico.write(tmp_path / "bin" / "dict.txt")
    assert (tmp_path / "bin" / "dict.txt").read_text(encoding="utf-8") == VOCAB  # specials implicit
    again = Dictionary.read(tmp_path / "bin" / "dict.txt")
    assert again == dico and again.counts == dico.counts
    assert again != Dictionary.from_vocab(_vocab(tmp_path), max_vocab=16)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        Dictionary.read(tmp_path / "nope.txt")
