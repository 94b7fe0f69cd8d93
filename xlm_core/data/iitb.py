"""IIT Bombay English-Hindi corpus: the original `parallel.tgz`, read safely.

`parallel.tgz` holds `parallel/IITB.en-hi.en` and `parallel/IITB.en-hi.hi` (one segment per
line, equal line counts). The archive is checked whole first (no absolute, parent-relative or
link members), the two sides are extracted with a per-member size cap into a temporary
directory beside the outputs, and written aligned. The same corpus is on OPUS as
`OPUS-IITB/v2.0/moses/en-hi.txt.zip` (`IITB.en-hi.{en,hi}`), read with `opus.read_moses_zip`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from xlm_core.data import archives
from xlm_core.data.download import to_url
from xlm_core.data.opus import OpusFormatError, decode_lines, write_aligned

__all__ = ["IITB_BASE_URL", "IITB_OPUS", "iitb_url", "read_iitb_tgz"]

logger = logging.getLogger(__name__)

# XLM's get-data-para.sh URL; later copies live under ~moses/ and ~parallelcorp/ on the same host.
IITB_BASE_URL = "http://www.cfilt.iitb.ac.in/iitb_parallel/iitb_corpus_download"
IITB_OPUS = ("IITB", "v2.0", "en-hi")  # corpus, version, pair of the OPUS moses zip


def iitb_url(base_url: str = IITB_BASE_URL, name: str = "parallel.tgz") -> str:
    """`{base}/parallel.tgz` (or `dev_test.tgz`); `base_url` may be a mirror or a local directory."""
    return f"{to_url(base_url)}/{name}"


def _member(files: list[str], tgz_path: Path, suffix: str) -> str:
    candidates = [name for name in files if name.endswith(suffix)]
    if len(candidates) != 1:
        raise OpusFormatError(
            f"{tgz_path}: expected exactly one member ending in {suffix!r} (parallel/IITB.en-hi.*), found "
            f"{candidates or 'none'}; members: {files[:20]}"
        )
    return candidates[0]


def read_iitb_tgz(tgz_path: Path, out_en: Path, out_hi: Path, *, max_member_bytes: int | None = None) -> int:
    """Write the English and Hindi sides of `parallel.tgz` (atomically); return the pair count.

    Raises:
        archives.UnsafeArchiveError: a member is absolute, parent-relative or a link.
        archives.ArchiveSizeError: a side decompresses to more than `max_member_bytes`.
        OpusFormatError: a side is missing or the sides have different line counts.
    """
    tgz_path, out_en = Path(tgz_path), Path(out_en)
    with archives.open_tar(tgz_path) as archive:
        try:
            files = [info.name for info in archives.check_tar(archive, tgz_path)]
        except (OSError, EOFError) as e:
            raise archives.ArchiveError(f"{tgz_path}: corrupt or truncated tar archive ({e})") from e
    wanted = {_member(files, tgz_path, ".en-hi.en"), _member(files, tgz_path, ".en-hi.hi")}
    out_en.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_en.name}.iitb-", dir=out_en.parent))
    try:
        extracted = archives.extract_tar(
            tgz_path, staging / "x", select=wanted.__contains__, max_member_bytes=max_member_bytes
        )
        by_suffix = {path.name.rsplit(".", 1)[-1]: path for path in extracted}
        counters: dict[str, int] = {}
        with open(by_suffix["en"], "rb") as en, open(by_suffix["hi"], "rb") as hi:
            count = write_aligned(
                decode_lines(en, by_suffix["en"].name, counters),
                decode_lines(hi, by_suffix["hi"].name, counters),
                out_en,
                Path(out_hi),
                source=str(tgz_path),
                names=(by_suffix["en"].name, by_suffix["hi"].name),
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for member, bad in counters.items():
        logger.warning("%s: %d lines of %s were not valid UTF-8 (bad bytes replaced)", tgz_path, bad, member)
    return count
