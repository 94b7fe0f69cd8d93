"""Duplicate detection for the cleaning stage: exact keys on a normalised form, and MinHash near-duplicates.

Exact: a line's key is a 64-bit BLAKE2b hash of its normalised form: NFKC, case-folded, with every
whitespace, punctuation, control and format character removed (digits, letters, marks and symbols kept),
so "Hello, world!" and "hello world" are one sentence and "Version 2" and "Version 3" are two. A pair's
key hashes both normalised sides. Keys are kept as a numpy array (8 bytes a line); with 64 bits, a
corpus of a billion lines has about a 3% chance of one spurious duplicate.

Near-duplicates: MinHash signatures (`datasketch`) over word 3-grams (character 5-grams for languages
written without spaces), looked up in an LSH index at the configured Jaccard threshold. The index holds
every kept line's bands in memory (about 1 KB a line), so it suits corpora of a few million lines.
"""

from __future__ import annotations

import functools
import hashlib
import unicodedata
from collections.abc import Sequence

import numpy as np

__all__ = ["NearDuplicates", "first_occurrences", "line_key", "normalize"]

_DROPPED_CATEGORIES = ("P", "Z", "Cc", "Cf")


# Planes 0-1 and 14 hold every punctuation, separator, control and format character (the planes above
# 1 and below 14 are CJK ideographs and unassigned code points): a quarter of the scan of all of Unicode.
_SCANNED = (range(0x20000), range(0xE0000, 0xE1000))


@functools.cache
def _drop_table() -> dict[int, None]:
    """`str.translate` table deleting whitespace, punctuation, control and format characters."""
    return {
        code: None
        for block in _SCANNED
        for code in block
        if unicodedata.category(chr(code)).startswith(_DROPPED_CATEGORIES) or chr(code).isspace()
    }


def normalize(text: str) -> str:
    """The form duplicates are compared on: NFKC, case-folded, without whitespace or punctuation."""
    return unicodedata.normalize("NFKC", text).casefold().translate(_drop_table())


def line_key(texts: Sequence[str]) -> int:
    """64-bit key of a line (one text) or a pair (its sides), on their normalised forms."""
    blob = "\x00".join(normalize(text) for text in texts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little")


def first_occurrences(keys: np.ndarray) -> np.ndarray:
    """Boolean mask of the lines whose key was not seen on an earlier line."""
    mask = np.zeros(len(keys), dtype=bool)
    if len(keys):
        _, first = np.unique(keys, return_index=True)
        mask[first] = True
    return mask


class NearDuplicates:
    """Sequential near-duplicate filter: `seen(texts)` is True when a line like it was added before,
    else it adds the line and returns False."""

    def __init__(self, threshold: float, num_perm: int = 64, *, char_grams: bool = False) -> None:
        from datasketch import MinHash, MinHashLSH

        self._minhash = MinHash
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._num_perm = num_perm
        self._char_grams = char_grams
        self._count = 0

    def _shingles(self, text: str) -> set[bytes]:
        norm = unicodedata.normalize("NFKC", text).casefold()
        if self._char_grams:
            chars = "".join(norm.split())
            grams = {chars[i : i + 5] for i in range(max(len(chars) - 4, 1))}
        else:
            words = norm.split()
            grams = {" ".join(words[i : i + 3]) for i in range(max(len(words) - 2, 1))}
        return {gram.encode("utf-8", "surrogatepass") for gram in grams}

    def seen(self, texts: Sequence[str]) -> bool:
        signature = self._minhash(num_perm=self._num_perm)
        shingles: set[bytes] = set()
        for side, text in enumerate(texts):
            shingles |= {bytes([side]) + gram for gram in self._shingles(text)}
        signature.update_batch(list(shingles))
        if self._lsh.query(signature):
            return True
        self._lsh.insert(str(self._count), signature, check_duplication=False)
        self._count += 1
        return False
