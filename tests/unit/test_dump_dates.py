"""Wikipedia dump dates: `latest` from the server's listing and dumpstatus.json, recorded for re-runs;
a pinned date the server no longer has; mirrors tried in order. Served by the local test server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support.http_server import Fault, serve
from xlm_core.config import load_config
from xlm_core.data import dump_dates, source_stages
from xlm_core.data.demo_mirror import build_wikipedia_dump

REPO = Path(__file__).resolve().parents[2]
DATES = ("20240101", "20240201", "20240301")  # the last one's articles dump is still running


def _index(dates: list[str]):  # noqa: ANN202 - a test-server route
    """`/enwiki/` as dumps.wikimedia.org lists it (nginx autoindex)."""
    rows = "".join(f'<a href="{d}/">{d}/</a>                 02-Feb-2024 01:26       -\n' for d in dates)
    page = f'<html><head><title>Index of /enwiki/</title></head><body><pre><a href="../">../</a>\n{rows}'
    page += '<a href="latest/">latest/</a>\n</pre></body></html>\n'
    return lambda query: (200, "text/html", page.encode())


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dumps")
    for date in DATES:
        build_wikipedia_dump("en", date, root, max_pages=3)
    status = root / "enwiki" / DATES[-1] / "dumpstatus.json"
    body = json.loads(status.read_text())
    body["jobs"]["articlesdump"]["status"] = "in-progress"
    status.write_text(json.dumps(body))
    return root


def test_latest_is_the_newest_finished_dump_and_is_recorded(dumps, tmp_path):
    record = tmp_path / "enwiki-latest-pages-articles.json"
    with serve(dumps, routes={"/enwiki/": _index(list(DATES))}) as server:
        assert dump_dates.available_dates(server.url, "en") == list(DATES)
        resolved = dump_dates.resolve_dump_date([server.url], "en", "latest", record=record)
        assert (resolved.date, resolved.server) == ("20240201", server.url)
        assert [r.path for r in server.requests if r.path.endswith("dumpstatus.json")] == [
            f"/enwiki/{DATES[2]}/dumpstatus.json",
            f"/enwiki/{DATES[1]}/dumpstatus.json",
        ]
    assert json.loads(record.read_text())["date"] == "20240201"
    # A later run reuses the record without asking any server, even one that lists a newer dump.
    again = dump_dates.resolve_dump_date(["http://127.0.0.1:9/unreachable"], "en", "latest", record=record)
    assert again.date == "20240201" and again.record == str(record)
    # The multistream file is resolved on its own job; a local mirror is listed directly.
    ms = dump_dates.resolve_dump_date([str(dumps)], "en", "latest", record=tmp_path / "ms.json", multistream=True)
    assert ms.date == DATES[-1]  # its articlesmultistreamdump job is done


def test_a_removed_pinned_date_fails_listing_the_available_dates(dumps, tmp_path):
    with (
        serve(dumps, routes={"/enwiki/": _index(list(DATES))}) as server,
        pytest.raises(dump_dates.DumpDateError) as caught,
    ):
        dump_dates.fetch_from_servers([server.url], "en", "20231201", tmp_path)
    message = str(caught.value)
    assert "data.wikipedia.dump_date" in message and "20231201 is no longer available" in message
    assert "has 20240101, 20240201, 20240301" in message
    assert not list(tmp_path.iterdir())


def test_latest_without_any_finished_dump_is_an_error(dumps, tmp_path):
    finished = "none has a finished pages-articles dump"
    with (
        serve(dumps, routes={"/enwiki/": _index([DATES[-1]])}) as server,
        pytest.raises(dump_dates.DumpDateError, match=finished),
    ):
        dump_dates.resolve_dump_date([server.url], "en", "latest", record=tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


def _stage_config(tmp_path: Path, base_url: str, mirrors: list[str], date: str = "latest"):
    return load_config(
        REPO / "configs" / "tiny.yaml",
        {
            "experiment.workdir": str(tmp_path / "work"),
            "data.demo_mirror": False,
            "data.wikipedia.base_url": base_url,
            "data.wikipedia.mirrors": mirrors,
            "data.wikipedia.dump_date": date,
        },
    )


def test_the_stage_falls_back_to_the_second_mirror_and_records_the_date(dumps, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(dumps, broken)
    for date in DATES:  # the first mirror's copy is corrupt: its SHA-1 does not match
        (broken / "enwiki" / date / f"enwiki-{date}-pages-articles.xml.bz2").write_bytes(b"not a dump")
    faults = {f"/enwiki/{DATES[1]}/enwiki-{DATES[1]}-sha1sums.txt": [Fault("status", status=404, times=9)]}
    index = {"/enwiki/": _index(list(DATES))}
    with serve(broken, routes=index) as first, serve(dumps, routes=index, faults=faults) as second:
        cfg = _stage_config(tmp_path, first.url, [second.url])
        assert source_stages.source_cache_key(cfg, "wikipedia", "en", first.url) is None  # not resolved yet
        dump = source_stages.fetch_wikipedia(cfg, "en", first.url)
        assert any(r.path.endswith("pages-articles.xml.bz2") for r in first.requests)  # tried, refused
    assert (dump["date"], dump["requested_date"], dump["server"]) == ("20240201", "latest", second.url)
    assert dump["date_resolved_from"] == first.url and dump["verified_by"] == "md5sums"
    assert dump["mlflow_params"] == {"data.wikipedia.resolved_dump_date.en": "20240201"}
    assert Path(dump["path"]).read_bytes() == (dumps / "enwiki" / DATES[1] / Path(dump["path"]).name).read_bytes()
    # The recorded date keys the download cache, so a re-run of this work directory reuses the dump.
    key = source_stages.source_cache_key(cfg, "wikipedia", "en", first.url)
    assert key is not None and key == source_stages.source_cache_key(cfg, "wikipedia", "en", first.url)


def test_a_recorded_date_the_servers_dropped_says_how_to_resolve_again(dumps, tmp_path):
    cfg = _stage_config(tmp_path, str(dumps), [])
    record = tmp_path / "work" / "downloads" / "wikipedia" / "enwiki-latest-pages-articles.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"date": "20230601"}))
    with pytest.raises(dump_dates.DumpDateError, match=r"no longer available.*delete that file"):
        source_stages.fetch_wikipedia(cfg, "en", str(dumps))
    record.unlink()
    assert source_stages.fetch_wikipedia(cfg, "en", str(dumps))["date"] == "20240201"
