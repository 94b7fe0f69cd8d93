"""Binarized sets: BPE text → flat token array + sentence offsets (docs/CONTRACTS.md).

`<prefix>.tokens.npy` holds each sentence's ids followed by one EOS; `<prefix>.offsets.npy` the
int64 `[start, end)` of each sentence (`tokens[end] == EOS`); `<prefix>.stats.json` the counts.
Writing streams straight into the `.npy` files (the header is written last into space reserved
up front), so memory stays bounded; reading memory-maps them.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import operator
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from xlm_core.data.dictionary import EOS_INDEX, NUM_SPECIALS, UNK_INDEX, Dictionary
from xlm_core.io import ProgressLog, atomic_open, atomic_path

__all__ = ["BinarizedSet", "binarize", "binarized_paths", "decode", "load_binarized"]

logger = logging.getLogger(__name__)

_HEADER_BYTES = 128  # a version-1.0 .npy header for a 1-D or (n, 2) shape always pads to 128 bytes
_BLOCK_BYTES = 1 << 20


def _read_blocks(path: Path, block_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(first line number, whole lines) blocks of about `block_bytes`; a last line without newline counts."""
    first, rest = 1, b""
    with open(path, "rb") as handle:
        while block := handle.read(block_bytes):
            block = rest + block
            cut = block.rfind(b"\n") + 1
            if cut:
                yield first, block[:cut]
                first += block.count(b"\n", 0, cut)
            rest = block[cut:]
    if rest:
        yield first, rest + b"\n"


def _index_block(
    block: bytes, word2id: dict[str, int], path: Path, first_line: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Ids (int64) and per-sentence lengths of a block of whole lines, and the number of dropped specials.

    Words are split on `' '` only, as fastBPE does (other whitespace stays inside a word).
    """
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as error:
        number = first_line + block.count(b"\n", 0, error.start)
        raise ValueError(f"{path}:{number}: not valid UTF-8 ({error})") from error
    lines = text.split("\n")[:-1]
    sentences = [line.split(" ") for line in lines]
    words = [word for sentence in sentences for word in sentence]
    lengths = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
    ids = np.fromiter(map(word2id.get, words, itertools.repeat(UNK_INDEX)), dtype=np.int64, count=len(words))
    # Rare cases, done by mask: empty words (blank lines, doubled spaces) and special tokens other
    # than <unk> written as words, which XLM drops (with a warning).
    empty = np.fromiter(map(operator.not_, words), dtype=bool, count=len(words))
    special = (ids < NUM_SPECIALS) & (ids != UNK_INDEX)
    drop = empty | special
    dropped = int(np.count_nonzero(special & ~empty))
    if drop.any():
        sentence_of = np.repeat(np.arange(len(lengths)), lengths)
        lengths = lengths - np.bincount(sentence_of[drop], minlength=len(lengths))
        ids = ids[~drop]
    return ids, lengths, dropped


def binarized_paths(prefix: str | Path) -> dict[str, Path]:
    prefix = str(prefix)
    return {
        key: Path(f"{prefix}.{key}.{ext}") for key, ext in (("tokens", "npy"), ("offsets", "npy"), ("stats", "json"))
    }


class _NpyWriter:
    """Append raw little-endian values to a .npy file whose header is filled in on `finish`."""

    def __init__(self, handle: BinaryIO, dtype: np.dtype, width: int = 1) -> None:
        self.handle, self.dtype, self.width, self.count = handle, np.dtype(dtype), width, 0
        handle.write(b"\0" * _HEADER_BYTES)

    def append(self, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype)
        self.handle.write(values.tobytes())
        self.count += values.shape[0]

    def finish(self) -> None:
        shape = (self.count,) if self.width == 1 else (self.count, self.width)
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, header)
        if len(buffer.getvalue()) != _HEADER_BYTES:
            raise RuntimeError(f"unexpected .npy header size {len(buffer.getvalue())} for shape {shape}")
        self.handle.flush()
        self.handle.seek(0)
        self.handle.write(buffer.getvalue())
        self.handle.flush()
        os.fsync(self.handle.fileno())


def binarize(text_path: str | Path, dictionary: Dictionary, out_prefix: str | Path) -> dict[str, Any]:
    """Index a BPE-applied text file (one sentence per line, words separated by `' '`).

    Unknown words map to UNK and are counted; special tokens other than `<unk>` appearing as
    words are dropped with a warning, as in XLM. A blank line is a zero-length sentence (kept, so
    the two sides of a pair stay line-aligned; `empty_sentences` counts them, `longest_sentence`
    is the longest in tokens).
    `stats.json` is written last, so its presence marks a complete set.

    Returns:
        The stats written to `<out_prefix>.stats.json`.
    """
    text_path = Path(text_path)
    if not text_path.is_file():
        raise ValueError(f"binarize: input {text_path} does not exist; run apply_bpe first")
    paths = binarized_paths(out_prefix)
    paths["stats"].unlink(missing_ok=True)  # the completion marker goes first, so a failed re-run reads as incomplete
    dtype = np.dtype(np.uint16 if len(dictionary) < 65536 else np.int32)
    n_sentences = n_tokens = n_unk = n_dropped = n_empty = longest = 0
    progress = ProgressLog(f"binarize {text_path.name}", log=logger)
    with (
        atomic_path(paths["tokens"]) as tokens_tmp,
        atomic_path(paths["offsets"]) as offsets_tmp,
        open(tokens_tmp, "wb") as tokens_handle,
        open(offsets_tmp, "wb") as offsets_handle,
    ):
        tokens_out = _NpyWriter(tokens_handle, dtype)
        offsets_out = _NpyWriter(offsets_handle, np.dtype(np.int64), width=2)
        for first_line, block in _read_blocks(text_path, _BLOCK_BYTES):
            ids, lengths, dropped = _index_block(block, dictionary.word2id, text_path, first_line)
            # every sentence is followed by one EOS: sentence k starts after k EOS and the tokens before it
            ends = np.cumsum(lengths) + np.arange(1, len(lengths) + 1) - 1
            starts = ends - lengths
            with_eos = np.full(len(ids) + len(lengths), EOS_INDEX, dtype=dtype)
            keep = np.ones(len(with_eos), dtype=bool)
            keep[ends] = False
            with_eos[keep] = ids
            offsets_out.append(np.stack([starts, ends], axis=1) + tokens_out.count)
            tokens_out.append(with_eos)
            n_sentences += len(lengths)
            n_tokens += len(ids)
            n_unk += int(np.count_nonzero(ids == UNK_INDEX))
            n_dropped += dropped
            n_empty += int(np.count_nonzero(lengths == 0))
            longest = max(longest, int(lengths.max(initial=0)))
            progress.update(len(lengths))
        tokens_out.finish()
        offsets_out.finish()
    progress.done()
    if n_dropped:
        logger.warning("%s: dropped %d special-token words (only <unk> may appear in text)", text_path, n_dropped)
    stats = {
        "sentences": n_sentences,
        "tokens": n_tokens,
        "unk_tokens": n_unk,
        "unk_rate": n_unk / n_tokens if n_tokens else 0.0,
        "empty_sentences": n_empty,
        "longest_sentence": longest,
        "dtype": dtype.name,
        "vocab_size": len(dictionary),
    }
    with atomic_open(paths["stats"], "w") as handle:
        json.dump(stats, handle, indent=2)
        handle.write("\n")
    logger.info(
        "binarized %s -> %s: %d sentences, %d tokens, %.3f%% unknown",
        text_path,
        out_prefix,
        n_sentences,
        n_tokens,
        100 * stats["unk_rate"],
    )
    return stats


@dataclass
class BinarizedSet:
    """A memory-mapped binarized set. `tokens` is the flat array, `offsets` (n, 2) `[start, end)`."""

    tokens: np.ndarray
    offsets: np.ndarray
    stats: dict[str, Any]
    prefix: Path

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    def sentence(self, i: int) -> np.ndarray:
        """Ids of sentence `i`, without its EOS."""
        start, end = self.offsets[i]
        return self.tokens[start:end]

    @property
    def lengths(self) -> np.ndarray:
        """Sentence lengths (tokens, EOS excluded), int64."""
        return self.offsets[:, 1] - self.offsets[:, 0]


def load_binarized(prefix: str | Path) -> BinarizedSet:
    """Memory-map `<prefix>.tokens.npy`/`offsets.npy` and read its stats; checks they agree."""
    paths = binarized_paths(prefix)
    if not paths["stats"].is_file():
        raise ValueError(
            f"binarized set {prefix} is incomplete or missing ({paths['stats']} not found); re-run the binarize stage"
        )
    stats = json.loads(paths["stats"].read_text(encoding="utf-8"))
    tokens = np.load(paths["tokens"], mmap_mode="r")
    offsets = np.load(paths["offsets"], mmap_mode="r")
    expected = (stats["tokens"] + stats["sentences"],)
    if tokens.dtype.name != stats["dtype"] or tokens.shape != expected or offsets.shape != (stats["sentences"], 2):
        raise ValueError(
            f"binarized set {prefix}: arrays {tokens.dtype}{tokens.shape}/{offsets.shape} disagree "
            f"with {paths['stats'].name} {stats}; delete the three files and re-run binarize"
        )
    return BinarizedSet(tokens=tokens, offsets=offsets, stats=stats, prefix=Path(prefix))


def decode(bset: BinarizedSet, dico: Dictionary, i: int) -> str:
    """Sentence `i` as BPE text (tokens joined by `' '`)."""
    words = dico.words
    return " ".join(words[index] for index in bset.sentence(i).tolist())
