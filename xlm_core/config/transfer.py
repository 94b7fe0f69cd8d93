"""The `data.download` and `data.unpack` sections: how long a download may take, and how much an archive
may decompress to.

Every limit is finite by default and sized so the real corpora pass: the largest Wikipedia dumps
(enwiki: ~22 GB of bz2, ~100 GB of XML), OPUS moses sides (MultiUN en-fr: ~1.4 GB a side), the
MultiNLI / XNLI-MT zips (~0.5 GB). A corpus above a cap fails with the key to raise named.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DownloadConfig", "UnpackConfig"]

GiB = 1 << 30
MiB = 1 << 20

# Slack on top of `deadline_s` for the Prefect timeout of a download task: lookups (OPUS API, checksum
# lists), waiting for the destination's lock and hashing a multi-GB file are not part of the transfer.
TASK_TIMEOUT_SLACK_S = 1800.0


class _Limits(BaseModel):
    # The settings of `xlm_core.config.sections._Section` (kept here: sections imports this module).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


class DownloadConfig(_Limits):
    timeout_s: float = Field(default=60.0, gt=0, description="Connect and per-read socket timeout in seconds.")
    retries: int = Field(
        default=5, ge=0, description="Retries of transient failures (5xx, resets, too slow) within one download."
    )
    deadline_s: float = Field(
        default=12 * 3600.0,
        gt=0,
        description="Longest time one download may take, resumes and retries included; then it fails (the "
        "partial file is kept for a later resume).",
    )
    min_bytes_per_s: float = Field(
        default=50_000.0,
        ge=0,
        description="Slowest acceptable transfer rate, averaged over rate_window_s; a slower transfer is retried "
        "(resumed) as a transient failure (0: no minimum).",
    )
    rate_window_s: float = Field(default=120.0, gt=0, description="Window over which the transfer rate is averaged.")

    @property
    def task_timeout_s(self) -> float:
        """Prefect `timeout_seconds` of a download task: the deadline plus slack for the work around it."""
        return self.deadline_s + TASK_TIMEOUT_SLACK_S


class UnpackConfig(_Limits):
    max_opus_member_bytes: int = Field(
        default=16 * GiB,
        ge=1,
        description="Largest decompressed side of an OPUS moses zip (MultiUN en-fr: ~1.4 GB a side).",
    )
    max_nli_member_bytes: int = Field(
        default=2 * GiB,
        ge=1,
        description="Largest decompressed member of the XNLI / XNLI-MT / MultiNLI zips (the largest: ~0.5 GB).",
    )
    max_wikipedia_xml_bytes: int = Field(
        default=512 * GiB,
        ge=1,
        description="Largest decompressed Wikipedia dump (enwiki pages-articles: ~100 GB of XML).",
    )
    max_ratio: float = Field(
        default=100.0,
        gt=1,
        description="Largest decompressed/compressed size ratio of a zip member once past 16 MiB (text deflates "
        "3-10x; a zip bomb about 1000x).",
    )
    max_line_bytes: int = Field(
        default=1 * MiB,
        ge=1,
        description="Longest line (a segment, a TSV row) read from an archive; longer lines are dropped and "
        "counted (with their pair's other side), never buffered.",
    )
