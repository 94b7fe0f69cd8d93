"""What the download stages (Wikipedia dumps, OPUS zips, NLI zips) share: their stage record, their
limits from the config, and the checksums of the mirrors this code builds.

A download runs as a stage (`xlm_core.stage_cache`) whose only output is the downloaded file. Its
record holds the file's size and mtime, so the stage's key, which is also the Prefect cache key of the
download task, stays valid only while that file is there unchanged: a dump deleted to free disk, or a
file changed in place, makes the next run fetch (and verify) it again instead of returning a cached
path to a missing file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from xlm_core.config import PipelineConfig
from xlm_core.data.download import (
    DownloadError,
    download_options,
    published_sha256,
    time_limits,
    write_checksum_list,
)
from xlm_core.stage_cache import Stage, run_stage

__all__ = ["download_stage", "fetch_limits", "mirror_checks", "publish_checksums", "recorded", "scoped_limits"]

T = TypeVar("T")


def download_stage(cfg: PipelineConfig, label: str, url: str, dest: Path, **params: Any) -> Stage:
    """The stage of downloading `url` to `dest`; `params` are what else decides the file (an API, a pin)."""
    return Stage(
        "download",
        label,
        cfg.workdir,
        params={"url": url, "max_bytes": cfg.data.max_download_bytes, **params},
        outputs=[dest],
    )


def recorded(stage: Stage | None, fetch: Callable[[], T]) -> T:
    """`fetch()` run as `stage` (reused while its file is unchanged), or run plainly when there is no stage
    (a `latest` release, whose file is only known once resolved)."""
    return fetch() if stage is None else run_stage(stage, fetch)


def fetch_limits(cfg: PipelineConfig) -> dict[str, Any]:
    """`download()` keyword arguments from the config: the size cap and the `data.download` limits."""
    return {"max_bytes": cfg.data.max_download_bytes, **download_options(cfg.data.download)}


def scoped_limits(cfg: PipelineConfig) -> contextlib.AbstractContextManager[None]:
    """The `data.download` time limits for the downloads of library code called inside the block."""
    settings = cfg.data.download
    return time_limits(
        deadline_s=settings.deadline_s, min_bytes_per_s=settings.min_bytes_per_s, rate_window_s=settings.rate_window_s
    )


def publish_checksums(files: Iterable[str | Path]) -> None:
    """Write the `SHA256SUMS` lists a mirror built here serves beside its files (see `mirror_checks`)."""
    write_checksum_list(Path(f) for f in files)


def mirror_checks(url: str, what: str) -> dict[str, str]:
    """`download()` checks of a file from a mirror built here: the SHA-256 its `SHA256SUMS` list gives."""
    sha256 = published_sha256(url)
    if sha256 is None:
        raise DownloadError(
            f"{url}: the {what} lists no SHA-256 for this file (SHA256SUMS beside it), so it cannot be verified. "
            "It was built by an older version of the pipeline: delete the mirror directory and run again.",
            url=url,
        )
    return {"sha256": sha256}
