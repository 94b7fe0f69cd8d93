"""XNLI 1.0, XNLI-MT 1.0 and MultiNLI 1.0: URLs and readers of the published zips.

Every reader writes, per language and split, three aligned line files in `out_dir`:

    {lang}.{split}.s1      premise (raw text; XNLI-MT text is already Moses-tokenised)
    {lang}.{split}.s2      hypothesis
    {lang}.{split}.label   entailment | neutral | contradiction

Splits: XNLI dev → `valid`, test → `test`; XNLI-MT MultiNLI train → `train`; MultiNLI
`train`, `dev_matched`, `dev_mismatched`. Line files (rather than XLM's intermediate
`premise\\thypo\\tlabel` TSV) feed the tokenisation and BPE stages unchanged.

TSVs are read with `csv.QUOTE_NONE` (bare `"` occur in the text), columns found by header name,
and every row must have the header's column count. XNLI-MT's `contradictory` becomes
`contradiction`; MultiNLI rows labelled `-` (no annotator consensus) are skipped. Zips are
checked whole first (`archives.check_zip`); `__MACOSX/` entries are skipped; each member's
decompressed size and compression ratio can be capped, and a row longer than `max_line_bytes` is
dropped and counted (`dropped`). Outputs are written atomically: a failure leaves none.

`RELEASES` pins the size and SHA-256 of the three published zips, so a download of one of them
(from the official URL or a mirror under the same name) is verified (`release_checks`).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, NamedTuple

from xlm_core.data import archives
from xlm_core.data.download import to_url
from xlm_core.data.opus import LINE_SEPARATORS
from xlm_core.io import atomic_open

__all__ = [
    "LABELS",
    "MULTINLI_BASE_URL",
    "XNLI_BASE_URL",
    "XNLI_LANGS",
    "RELEASES",
    "NLIFormatError",
    "Release",
    "multinli_url",
    "nli_files",
    "read_multinli",
    "read_xnli",
    "read_xnli_mt_set",
    "read_xnli_mt_train",
    "release_checks",
    "xnli_mt_url",
    "xnli_url",
]

logger = logging.getLogger(__name__)

XNLI_BASE_URL = "https://dl.fbaipublicfiles.com/XNLI"
MULTINLI_BASE_URL = "https://cims.nyu.edu/~sbowman/multinli"
XNLI_LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
LABELS = ("entailment", "neutral", "contradiction")
XNLI_SPLITS = {"dev": "valid", "test": "test"}
MULTINLI_SPLITS = ("train", "dev_matched", "dev_mismatched")


class NLIFormatError(ValueError):
    """An NLI archive is not in the published layout (member, header, columns or labels)."""


class Release(NamedTuple):
    size: int
    sha256: str
    source: str  # where the numbers were published


# Sizes and SHA-256 of the published zips, as recorded by the dataset libraries that download them.
RELEASES: dict[str, Release] = {
    "XNLI-1.0.zip": Release(
        17_865_352,
        "4ba1d5e1afdb7161f0f23c66dc787802ccfa8a25a3ddd3b165a35e50df346ab1",
        "TensorFlow Datasets url_checksums/xnli.txt; Hugging Face datasets xnli/dataset_infos.json",
    ),
    "XNLI-MT-1.0.zip": Release(
        466_098_360,
        "f732517ba2fb1d550e9f3c2aabaef6017c91ee2dcec90e878f138764d224db05",
        "Hugging Face datasets xnli/dataset_infos.json",
    ),
    "multinli_1.0.zip": Release(
        226_850_426,
        "049f507b9e36b1fcb756cfd5aeb3b7a0cfcb84bf023793652987f7e7e0957822",
        "TensorFlow Datasets url_checksums/multi_nli.txt; ParlAI tasks/multinli",
    ),
}


def release_checks(url: str) -> dict[str, int | str]:
    """`download()` checks (`size`, `sha256`) for a URL naming a published zip; {} for any other file."""
    release = RELEASES.get(url.rstrip("/").rsplit("/", 1)[-1])
    return {} if release is None else {"size": release.size, "sha256": release.sha256}


def xnli_url(base_url: str = XNLI_BASE_URL) -> str:
    return f"{to_url(base_url)}/XNLI-1.0.zip"


def xnli_mt_url(base_url: str = XNLI_BASE_URL) -> str:
    return f"{to_url(base_url)}/XNLI-MT-1.0.zip"


def multinli_url(base_url: str = MULTINLI_BASE_URL) -> str:
    return f"{to_url(base_url)}/multinli_1.0.zip"


def nli_files(out_dir: Path, lang: str, split: str) -> tuple[Path, Path, Path]:
    """The premise, hypothesis and label files of one language and split."""
    stem = Path(out_dir) / f"{lang}.{split}"
    return stem.with_name(stem.name + ".s1"), stem.with_name(stem.name + ".s2"), stem.with_name(stem.name + ".label")


def _find(files: list[zipfile.ZipInfo], zip_path: Path, basename: str) -> zipfile.ZipInfo:
    found = [info for info in files if Path(info.filename).name == basename]
    if len(found) != 1:
        names = [info.filename for info in files]
        raise NLIFormatError(
            f"{zip_path}: expected exactly one member named {basename!r}, found "
            f"{[info.filename for info in found] or 'none'}; members: {names[:30]}. Is this the right archive?"
        )
    return found[0]


def _text_lines(stream: Iterable[bytes], where: str) -> Iterator[str]:
    for number, raw in enumerate(stream, 1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise NLIFormatError(f"{where}:{number}: not UTF-8 ({e})") from e


def _rows(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    zip_path: Path,
    required: tuple[str, ...],
    max_bytes: int | None,
    *,
    max_ratio: float | None = None,
    max_line_bytes: int | None = None,
    dropped: dict[str, int] | None = None,
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, {column: value}) for each data row, columns checked against the header.

    The member is read under `archives.read_zip_member`'s caps; rows longer than `max_line_bytes` are
    left out, logged and counted in `dropped` under the member's name.
    """
    where = f"{zip_path}:{info.filename}"
    with archives.read_zip_member(
        archive, info, path=zip_path, max_member_bytes=max_bytes, max_ratio=max_ratio, max_line_bytes=max_line_bytes
    ) as stream:
        yield from _checked_rows(stream, where, required)
    if stream.dropped_lines:
        logger.warning(
            "%s: %d rows left out, longer than %s bytes (max_line_bytes; the longest: %d bytes)",
            where,
            stream.dropped_lines,
            max_line_bytes,
            stream.longest_dropped,
        )
        if dropped is not None:
            dropped[info.filename] = dropped.get(info.filename, 0) + stream.dropped_lines


def _checked_rows(
    stream: Iterable[bytes], where: str, required: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(_text_lines(stream, where), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None)
    if header is None or not set(required) <= set(header):
        raise NLIFormatError(f"{where}: header {header} lacks the columns {list(required)}")
    while True:
        try:
            row = next(reader, None)
        except csv.Error as e:
            raise NLIFormatError(f"{where}:{reader.line_num}: unreadable TSV row ({e})") from e
        if row is None:
            return
        if len(row) != len(header):
            raise NLIFormatError(
                f"{where}:{reader.line_num}: expected {len(header)} tab-separated columns, found {len(row)}"
            )
        yield reader.line_num, dict(zip(header, row, strict=True))


def _clean(text: str) -> str:
    return LINE_SEPARATORS.sub(" ", text).strip()


class _Writers:
    """Lazily opened, atomically written s1/s2/label files per (lang, split)."""

    def __init__(self, stack: contextlib.ExitStack, out_dir: Path) -> None:
        self.stack, self.out_dir = stack, Path(out_dir)
        self.handles: dict[tuple[str, str], tuple[IO[str], IO[str], IO[str]]] = {}
        self.counts: dict[str, dict[str, int]] = {}

    def write(self, lang: str, split: str, premise: str, hypothesis: str, label: str) -> None:
        key = (lang, split)
        if key not in self.handles:
            paths = nli_files(self.out_dir, lang, split)
            self.handles[key] = tuple(self.stack.enter_context(atomic_open(path)) for path in paths)  # type: ignore[assignment]
        s1, s2, lab = self.handles[key]
        s1.write(_clean(premise) + "\n")
        s2.write(_clean(hypothesis) + "\n")
        lab.write(label + "\n")
        self.counts.setdefault(lang, {}).setdefault(split, 0)
        self.counts[lang][split] += 1


def _label(value: str, where: str, line: int, *, aliases: dict[str, str] | None = None) -> str:
    label = (aliases or {}).get(value, value)
    if label not in LABELS:
        raise NLIFormatError(f"{where}:{line}: label {value!r} is not one of {list(LABELS)}")
    return label


@contextlib.contextmanager
def _open_checked(zip_path: Path) -> Iterator[tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]]:
    with archives.open_zip(zip_path) as archive:
        yield archive, archives.check_zip(archive, zip_path)


def read_xnli(
    zip_path: Path,
    out_dir: Path,
    *,
    langs: Iterable[str] | None = None,
    max_member_bytes: int | None = None,
    max_ratio: float | None = None,
    max_line_bytes: int | None = None,
    dropped: dict[str, int] | None = None,
) -> dict[str, dict[str, int]]:
    """XNLI-1.0.zip (`XNLI-1.0/xnli.{dev,test}.tsv`) → `{lang}.valid.*` and `{lang}.test.*`.

    `max_member_bytes`, `max_ratio` and `max_line_bytes` are `archives.read_zip_member`'s caps; rows
    dropped as too long are counted per member in `dropped`.

    Returns:
        `{lang: {"valid": pairs, "test": pairs}}` for the languages written (all found, or `langs`).
    """
    zip_path = Path(zip_path)
    keep = set(langs) if langs is not None else None
    columns = ("language", "gold_label", "sentence1", "sentence2")
    caps = {"max_ratio": max_ratio, "max_line_bytes": max_line_bytes, "dropped": dropped}
    with _open_checked(zip_path) as (archive, files), contextlib.ExitStack() as stack:
        writers = _Writers(stack, out_dir)
        for source, split in XNLI_SPLITS.items():
            info = _find(files, zip_path, f"xnli.{source}.tsv")
            for line, row in _rows(archive, info, zip_path, columns, max_member_bytes, **caps):
                lang = row["language"]
                if keep is not None and lang not in keep:
                    continue
                label = _label(row["gold_label"], f"{zip_path}:{info.filename}", line)
                writers.write(lang, split, row["sentence1"], row["sentence2"], label)
        missing = sorted((keep or set()) - set(writers.counts))
        if missing:
            raise NLIFormatError(f"{zip_path}: no XNLI rows for {missing}; languages found: {sorted(writers.counts)}")
    logger.info("%s: %s", zip_path, {lang: counts for lang, counts in sorted(writers.counts.items())})
    return writers.counts


def read_xnli_mt_train(
    zip_path: Path,
    out_dir: Path,
    *,
    lang: str = "en",
    max_member_bytes: int | None = None,
    max_ratio: float | None = None,
    max_line_bytes: int | None = None,
    dropped: dict[str, int] | None = None,
) -> int:
    """XNLI-MT-1.0.zip `multinli/multinli.train.{lang}.tsv` → `{lang}.train.*`; returns the pair count.

    The text is already Moses-tokenised (XLM lowercases it but does not tokenise it again). The caps
    and `dropped` are `read_xnli`'s.
    """
    zip_path = Path(zip_path)
    caps = {"max_ratio": max_ratio, "max_line_bytes": max_line_bytes, "dropped": dropped}
    with _open_checked(zip_path) as (archive, files), contextlib.ExitStack() as stack:
        writers = _Writers(stack, out_dir)
        info = _find(files, zip_path, f"multinli.train.{lang}.tsv")
        for line, row in _rows(archive, info, zip_path, ("premise", "hypo", "label"), max_member_bytes, **caps):
            label = _label(
                row["label"], f"{zip_path}:{info.filename}", line, aliases={"contradictory": "contradiction"}
            )
            writers.write(lang, "train", row["premise"], row["hypo"], label)
        count = writers.counts.get(lang, {}).get("train", 0)
        if count == 0:
            raise NLIFormatError(f"{zip_path}:{info.filename}: no rows")
    return count


def read_multinli(
    zip_path: Path,
    out_dir: Path,
    *,
    splits: Iterable[str] = MULTINLI_SPLITS,
    max_member_bytes: int | None = None,
    max_ratio: float | None = None,
    max_line_bytes: int | None = None,
    dropped: dict[str, int] | None = None,
) -> dict[str, int]:
    """multinli_1.0.zip `multinli_1.0/multinli_1.0_{split}.txt` → `en.{split}.*`, skipping `-` labels.

    The caps and `dropped` are `read_xnli`'s.

    Returns:
        `{split: pairs written}`; skipped rows are logged.
    """
    zip_path = Path(zip_path)
    columns = ("gold_label", "sentence1", "sentence2")
    caps = {"max_ratio": max_ratio, "max_line_bytes": max_line_bytes, "dropped": dropped}
    skipped: dict[str, int] = {}
    with _open_checked(zip_path) as (archive, files), contextlib.ExitStack() as stack:
        writers = _Writers(stack, out_dir)
        for split in splits:
            if split not in MULTINLI_SPLITS:
                raise NLIFormatError(f"MultiNLI split {split!r} is not one of {list(MULTINLI_SPLITS)}")
            info = _find(files, zip_path, f"multinli_1.0_{split}.txt")
            for line, row in _rows(archive, info, zip_path, columns, max_member_bytes, **caps):
                if row["gold_label"] == "-":
                    skipped[split] = skipped.get(split, 0) + 1
                    continue
                label = _label(row["gold_label"], f"{zip_path}:{info.filename}", line)
                writers.write("en", split, row["sentence1"], row["sentence2"], label)
    if skipped:
        logger.info("%s: skipped rows without a gold label: %s", zip_path, skipped)
    return {split: writers.counts.get("en", {}).get(split, 0) for split in splits}


# XNLI-MT members by what they hold: the translated MultiNLI train set, and each language's XNLI dev/test
# set machine-translated into English (translate-test).
XNLI_MT_MEMBERS = {"train": "multinli.train.{lang}.tsv", "dev": "xnli.dev.{lang}.tsv", "test": "xnli.test.{lang}.tsv"}


def read_xnli_mt_set(
    zip_path: Path,
    out_dir: Path,
    *,
    kind: str,
    lang: str,
    split: str,
    max_member_bytes: int | None = None,
    max_ratio: float | None = None,
    max_line_bytes: int | None = None,
    dropped: dict[str, int] | None = None,
) -> int:
    """One XNLI-MT member (`premise hypo label`, see `XNLI_MT_MEMBERS`) of `lang` → `{lang}.{split}.*`.

    `kind` is "train" (MultiNLI translated into `lang`), "dev" or "test" (`lang`'s XNLI set translated
    into English). The text is already tokenised. The caps and `dropped` are `read_xnli`'s. Returns the
    pair count.
    """
    caps = {"max_ratio": max_ratio, "max_line_bytes": max_line_bytes, "dropped": dropped}
    if kind not in XNLI_MT_MEMBERS:
        raise ValueError(f"XNLI-MT member kind {kind!r} is not one of {list(XNLI_MT_MEMBERS)}")
    zip_path = Path(zip_path)
    with _open_checked(zip_path) as (archive, files), contextlib.ExitStack() as stack:
        writers = _Writers(stack, out_dir)
        info = _find(files, zip_path, XNLI_MT_MEMBERS[kind].format(lang=lang))
        for line, row in _rows(archive, info, zip_path, ("premise", "hypo", "label"), max_member_bytes, **caps):
            label = _label(
                row["label"], f"{zip_path}:{info.filename}", line, aliases={"contradictory": "contradiction"}
            )
            writers.write(lang, split, row["premise"], row["hypo"], label)
        count = writers.counts.get(lang, {}).get(split, 0)
        if count == 0:
            raise NLIFormatError(f"{zip_path}:{info.filename}: no rows")
    return count
