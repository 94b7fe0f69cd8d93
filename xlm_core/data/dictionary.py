"""The XLM dictionary: 14 fixed special tokens (ids 0–13), then BPE tokens by descending count.

Reading follows XLM's `read_vocab`: a line is skipped if it contains U+2028, is not exactly
`token count`, or repeats a known token; kept tokens get consecutive ids from 14.
"""

from __future__ import annotations

import logging
from pathlib import Path

from xlm_core.io import atomic_open

__all__ = [
    "BOS_INDEX",
    "EOS_INDEX",
    "MASK_INDEX",
    "NUM_SPECIALS",
    "PAD_INDEX",
    "SPECIAL_WORDS",
    "UNK_INDEX",
    "Dictionary",
]

logger = logging.getLogger(__name__)

SPECIAL_WORDS: tuple[str, ...] = ("<s>", "</s>", "<pad>", "<unk>", *(f"<special{i}>" for i in range(10)))
BOS_INDEX = 0
EOS_INDEX = 1
PAD_INDEX = 2
UNK_INDEX = 3
MASK_INDEX = 5
NUM_SPECIALS = len(SPECIAL_WORDS)
assert NUM_SPECIALS == 14 and SPECIAL_WORDS[MASK_INDEX] == "<special1>"


class Dictionary:
    """Token ↔ id mapping. Build with `from_vocab` (fastBPE vocab) or `read` (bin/dict.txt)."""

    def __init__(self, words: list[str], counts: list[int]) -> None:
        """`words`/`counts` exclude the specials, which are prepended with count 0."""
        if len(words) != len(counts):
            raise ValueError(f"Dictionary: {len(words)} words but {len(counts)} counts")
        self.words: list[str] = [*SPECIAL_WORDS, *words]
        self.counts: list[int] = [0] * NUM_SPECIALS + list(counts)
        self.word2id: dict[str, int] = {word: index for index, word in enumerate(self.words)}
        if len(self.word2id) != len(self.words):
            raise ValueError("Dictionary: duplicate tokens (or a token named like a special token)")

    bos_index = BOS_INDEX
    eos_index = EOS_INDEX
    pad_index = PAD_INDEX
    unk_index = UNK_INDEX
    mask_index = MASK_INDEX

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.word2id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Dictionary):
            return NotImplemented
        return self.words == other.words

    def __hash__(self) -> int:
        return hash(tuple(self.words))

    def __repr__(self) -> str:
        return f"Dictionary({len(self)} entries, {NUM_SPECIALS} specials)"

    def index(self, word: str) -> int:
        """Id of `word`, or UNK_INDEX if unknown."""
        return self.word2id.get(word, UNK_INDEX)

    @classmethod
    def from_vocab(cls, vocab_path: str | Path, *, max_vocab: int = -1, min_count: int = 0) -> Dictionary:
        """Read a fastBPE vocabulary (`token count` per line, count-descending).

        Args:
            vocab_path: fastBPE `getvocab` output or a dict.txt.
            max_vocab: keep ids < max_vocab, specials included, as XLM's `--max_vocab` (-1: all).
            min_count: drop tokens whose count is below this (specials always kept).
        """
        if max_vocab != -1 and max_vocab <= NUM_SPECIALS:
            raise ValueError(f"max_vocab must be -1 or > {NUM_SPECIALS} (the specials); got {max_vocab}")
        if min_count < 0:
            raise ValueError(f"min_count must be >= 0; got {min_count}")
        words, counts = _read_entries(Path(vocab_path))
        keep = [i for i, count in enumerate(counts) if count >= min_count]
        if max_vocab != -1:
            keep = keep[: max_vocab - NUM_SPECIALS]
        dico = cls([words[i] for i in keep], [counts[i] for i in keep])
        logger.info(
            "dictionary from %s: %d entries (%d read, max_vocab=%d, min_count=%d)",
            vocab_path,
            len(dico),
            len(words),
            max_vocab,
            min_count,
        )
        return dico

    @classmethod
    def read(cls, path: str | Path) -> Dictionary:
        """Read a dict.txt written by `write`."""
        words, counts = _read_entries(Path(path))
        return cls(words, counts)

    def write(self, path: str | Path) -> None:
        """Write dict.txt: one `token count` line per id from 14 (the specials stay implicit)."""
        with atomic_open(path, "w", newline="\n") as handle:
            for word, count in zip(self.words[NUM_SPECIALS:], self.counts[NUM_SPECIALS:], strict=True):
                handle.write(f"{word} {count}\n")


def _read_entries(path: Path) -> tuple[list[str], list[int]]:
    if not path.is_file():
        raise ValueError(f"vocabulary file {path} does not exist; run the BPE vocabulary stage first")
    words: list[str] = []
    counts: list[int] = []
    seen = set(SPECIAL_WORDS)
    skipped = 0
    with open(path, encoding="utf-8", newline="\n") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.rstrip("\n").split()
            if "\u2028" in line or len(fields) != 2 or not (fields[1].isascii() and fields[1].isdigit()):
                logger.warning(
                    "%s:%d: skipped malformed vocabulary line %r (want `token count`)",
                    path,
                    number,
                    line.rstrip("\n")[:80],
                )
                skipped += 1
                continue
            word, count = fields[0], int(fields[1])
            if word in seen:
                logger.warning("%s:%d: skipped duplicate token %r", path, number, word)
                skipped += 1
                continue
            if counts and count > counts[-1]:
                raise ValueError(
                    f"{path}:{number}: count {count} of {word!r} exceeds the previous line's "
                    f"{counts[-1]}; the vocabulary must be count-descending (fastBPE getvocab order)"
                )
            seen.add(word)
            words.append(word)
            counts.append(count)
    if skipped:
        logger.warning("%s: %d vocabulary lines skipped", path, skipped)
    return words, counts
