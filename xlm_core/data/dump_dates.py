"""Which Wikipedia dump to fetch: `latest` resolved from the dump server's listing, pinned dates
checked against it, and a list of mirrors tried in order.

Wikimedia keeps only its few most recent dumps per wiki, so a pinned date goes stale within months.
`https://dumps.wikimedia.org/<lang>wiki/` lists the dated directories (`20240601/`, ...) and each
`<date>/dumpstatus.json` says whether its jobs are done; `latest` is the newest date whose articles
job (`articlesdump`, or `articlesmultistreamdump` for the multistream file) is `done`. Mirrors of the
dump tree (same layout) answer the same requests; a local mirror (a directory or `file://`) is
listed directly.

Resolution happens once: the chosen date is written to `<downloads>/<lang>wiki-latest-<kind>.json`
and every later run of the same work directory reuses it, so a re-run fetches the same dump.
Resolving again is a deliberate act: delete that file (or pin `data.wikipedia.dump_date`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from xlm_core.data import wikipedia
from xlm_core.data.download import DownloadError, DownloadSizeError, TransientDownloadError, read_url, to_url
from xlm_core.io import atomic_open

__all__ = [
    "DumpDateError",
    "Resolution",
    "available_dates",
    "dump_done",
    "fetch_from_servers",
    "latest_record_path",
    "newest_done_date",
    "recorded_date",
    "resolve_dump_date",
]

logger = logging.getLogger(__name__)

_DATE = re.compile(r"^\d{8}$")
# `<a href="20240601/">` (Wikimedia, Apache and nginx indexes), also `./20240601/` or `/enwiki/20240601/`.
_HREF = re.compile(r"""href\s*=\s*["']?(?:[^"'\s>]*/)?(\d{8})/?["'\s>]""", re.IGNORECASE)


class DumpDateError(DownloadError):
    """No server has the requested dump date, or none lists a finished dump for `latest`."""


@dataclass(frozen=True)
class Resolution:
    lang: str
    requested: str  # the configured value: YYYYMMDD or "latest"
    date: str  # the date fetched
    server: str | None  # where `latest` was resolved (None for a pinned date)
    record: str | None  # the record file `latest` was read from or written to
    resolved_at: str | None = None  # UTC time of the resolution


def _kind(multistream: bool) -> str:
    return "pages-articles-multistream" if multistream else "pages-articles"


def _local_dir(url: str) -> Path | None:
    if url.startswith("file://"):
        return Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    return None if re.match(r"^[a-z][a-z0-9+.-]*://", url) else Path(url)


def available_dates(base_url: str, lang: str, *, timeout: float = 30) -> list[str]:
    """Dated dump directories of `<lang>wiki` on the server, oldest first.

    Raises:
        DownloadError: the listing cannot be read (status 404 when the wiki is not there).
    """
    wikipedia.dump_name(lang, "00000000")  # checks the language code before it becomes a path
    url = f"{to_url(base_url)}/{lang}wiki/"
    local = _local_dir(url)
    if local is not None:
        if not local.is_dir():
            raise DownloadError(f"{url}: no such directory {local}", url=url, status=404)
        return sorted(p.name for p in local.iterdir() if p.is_dir() and _DATE.match(p.name))
    page = read_url(url, timeout=timeout).decode("utf-8", errors="replace")
    return sorted(set(_HREF.findall(page)))


def dump_done(base_url: str, lang: str, date: str, *, multistream: bool = False, timeout: float = 30) -> bool:
    """Whether `<date>/dumpstatus.json` reports the articles job as done (False when it is missing)."""
    url = f"{to_url(base_url)}/{lang}wiki/{date}/dumpstatus.json"
    job = "articlesmultistreamdump" if multistream else "articlesdump"
    try:
        status = json.loads(read_url(url, timeout=timeout))["jobs"][job]["status"]
    except DownloadError as e:
        if e.status != 404:
            raise
        return False
    except (ValueError, KeyError, TypeError) as e:
        logger.warning("%s: no readable %s status (%s); skipping %s", url, job, e, date)
        return False
    return status == "done"


def newest_done_date(base_url: str, lang: str, *, multistream: bool = False, timeout: float = 30) -> str:
    """The newest listed date whose articles dump is done."""
    dates = available_dates(base_url, lang, timeout=timeout)
    for date in reversed(dates):
        if dump_done(base_url, lang, date, multistream=multistream, timeout=timeout):
            return date
        logger.info("%swiki %s on %s: the %s dump is not done yet", lang, date, base_url, _kind(multistream))
    url = f"{to_url(base_url)}/{lang}wiki/"
    raise DumpDateError(
        f"data.wikipedia.dump_date=latest: {url} lists {', '.join(dates) or 'no dated dumps'} but none has a "
        f"finished {_kind(multistream)} dump (dumpstatus.json); pin data.wikipedia.dump_date to a finished "
        "date or try again later",
        url=url,
    )


def latest_record_path(downloads: Path, lang: str, multistream: bool = False) -> Path:
    """Where the date resolved for `latest` is recorded."""
    return Path(downloads) / f"{lang}wiki-latest-{_kind(multistream)}.json"


def recorded_date(record: Path) -> str | None:
    """The date recorded for `latest`, or None when nothing was resolved yet."""
    if not record.is_file():
        return None
    try:
        date = json.loads(record.read_text(encoding="utf-8"))["date"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{record}: unreadable dump-date record ({e}); delete it to resolve `latest` again") from e
    if not isinstance(date, str) or not _DATE.match(date):
        raise ValueError(f"{record}: {date!r} is not a YYYYMMDD date; delete the file to resolve `latest` again")
    return date


def resolve_dump_date(
    servers: Sequence[str],
    lang: str,
    requested: str,
    *,
    record: Path,
    multistream: bool = False,
    timeout: float = 30,
) -> Resolution:
    """The date to fetch: a pinned one as is; `latest` from `record`, else resolved on the first server
    whose listing can be read (then written to `record`)."""
    if requested != "latest":
        return Resolution(lang, requested, requested, None, None)
    date = recorded_date(record)
    if date is not None:
        saved = json.loads(record.read_text(encoding="utf-8"))
        logger.info("%swiki: latest = %s, as recorded in %s (delete it to resolve again)", lang, date, record)
        return Resolution(lang, requested, date, saved.get("server"), str(record), saved.get("resolved_at"))
    problems = []
    for server in servers:
        try:
            date = newest_done_date(server, lang, multistream=multistream, timeout=timeout)
        except DumpDateError:
            raise
        except DownloadError as e:
            problems.append(f"{server}: {e}")
            logger.warning("%swiki: cannot read the dump listing of %s (%s)", lang, server, e)
            continue
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        resolution = Resolution(lang, requested, date, server, str(record), now)
        record.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(record) as handle:
            json.dump(asdict(resolution) | {"kind": _kind(multistream)}, handle, indent=1, sort_keys=True)
        logger.info("%swiki: latest finished dump on %s is %s (recorded in %s)", lang, server, date, record)
        return resolution
    raise DumpDateError(
        f"data.wikipedia.dump_date=latest: no server lists the {lang}wiki dumps ({'; '.join(problems)}); "
        "check data.wikipedia.base_url / data.wikipedia.mirrors or pin data.wikipedia.dump_date=YYYYMMDD",
        url=servers[0] if servers else "",
    )


def fetch_from_servers(
    servers: Sequence[str],
    lang: str,
    date: str,
    dest_dir: Path,
    *,
    multistream: bool = False,
    max_bytes: int | None = None,
    timeout: float = 30,
    retries: int = 5,
) -> tuple[wikipedia.FetchedDump, str]:
    """The verified dump of `date` from the first server that has it; returns it and that server.

    A server whose listing lacks the date is skipped; one that fails (missing file, bad checksum,
    persistent network errors) gives way to the next. A size cap (`max_bytes`) is not a server
    fault and is raised at once.

    Raises:
        DumpDateError: no server has `date`; the message lists the dates each one has.
        DownloadError / TransientDownloadError: every server failed otherwise (all reasons listed).
    """
    problems: list[str] = []
    listed: dict[str, list[str]] = {}
    transient = False
    for server in servers:
        try:
            dates = available_dates(server, lang, timeout=timeout)
        except DownloadError:
            dates = None  # no readable listing (some mirrors serve files only): try the file itself
        if dates is not None and date not in dates:
            listed[server] = dates
            problems.append(f"{server} has {', '.join(dates) or 'no dated dumps'}")
            continue
        try:
            fetched = wikipedia.fetch_dump(
                server, lang, date, dest_dir, multistream, timeout=timeout, retries=retries, max_bytes=max_bytes
            )
        except DownloadSizeError:
            raise
        except DownloadError as e:
            transient = transient or isinstance(e, TransientDownloadError)
            problems.append(f"{server}: {e}")
            logger.warning("%swiki %s: %s failed (%s); trying the next server", lang, date, server, e)
            continue
        return fetched, server
    if listed and len(listed) == len(servers):
        raise DumpDateError(
            f"data.wikipedia.dump_date: the {lang}wiki dump {date} is no longer available ({'; '.join(problems)}). "
            "Wikimedia keeps only its latest dumps: set data.wikipedia.dump_date to one of these dates or to "
            "`latest`, or add a mirror that keeps it (data.wikipedia.mirrors)",
            url=f"{to_url(servers[0])}/{lang}wiki/",
        )
    error = TransientDownloadError if transient else DownloadError
    raise error(
        f"{lang}wiki dump {date}: every server failed ({'; '.join(problems)}); check data.wikipedia.base_url and "
        "data.wikipedia.mirrors",
        url=f"{to_url(servers[0])}/{lang}wiki/{date}/" if servers else "",
    )
