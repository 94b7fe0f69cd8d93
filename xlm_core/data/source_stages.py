"""Data stages that obtain the raw text: the sources (or the offline demo mirror), Wikipedia dumps and
their extraction, OPUS moses zips read into parallel text, and the train/valid/test split.

Each function reads the experiment config and the work layout, does one step and returns small
serialisable values (paths, statistics). `xlm_core.data.stages` re-exports them with the text
stages that follow (tokenize, BPE, dictionary, binarize).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from xlm_core.config import PipelineConfig
from xlm_core.data import demo_mirror, dump_dates, opus, split, wikipedia
from xlm_core.data.clean_stages import split_sources
from xlm_core.data.download import download
from xlm_core.data.download_stages import (
    download_stage,
    fetch_limits,
    mirror_checks,
    publish_checksums,
    recorded,
    scoped_limits,
)
from xlm_core.io import atomic_open
from xlm_core.paths import SPLITS, WorkLayout
from xlm_core.stage_cache import Stage, root_id, run_stage

__all__ = [
    "STAGE_BUILDERS",
    "extract_wikipedia",
    "fetch_opus",
    "fetch_wikipedia",
    "latest_record",
    "prepare_sources",
    "read_parallel",
    "source_cache_key",
    "split_mono",
    "split_para",
    "workdir_id",
]

logger = logging.getLogger(__name__)


def _layout(cfg: PipelineConfig) -> WorkLayout:
    return WorkLayout(cfg.workdir)


_DATA_CODE = ("xlm_core.data.source_stages", "xlm_core.io")


def _mirror_args(cfg: PipelineConfig) -> dict[str, Any]:
    return {
        "langs": cfg.data.mono,
        "pairs": cfg.data.pairs,
        "date": cfg.data.wikipedia.dump_date,
        "max_pages": cfg.data.demo_max_pages,
        "max_pairs": cfg.data.demo_max_pairs,
        "corpora": [(c.corpus, c.version, c.pair) for c in cfg.data.parallel],
    }


def _sources_stage(cfg: PipelineConfig) -> Stage:
    return Stage(
        "demo-mirror",
        "all",
        cfg.workdir,
        params=_mirror_args(cfg),
        outputs=[cfg.workdir / "mirror"],
        code=(
            *_DATA_CODE,
            "xlm_core.data.demo_mirror",
            "xlm_core.data.manpage",
            "xlm_core.data.demo_catalogs",
            "xlm_core.data.demo_sources",  # the lock table: other sources, other corpora
        ),
    )


def prepare_sources(cfg: PipelineConfig) -> dict[str, str]:
    """Base URLs of the Wikipedia and OPUS servers; builds the offline demo mirror when configured."""
    if not cfg.data.demo_mirror:
        return {"wikipedia": cfg.data.wikipedia.base_url, "opus": cfg.data.opus_base_url}

    def build() -> dict[str, str]:
        built = demo_mirror.build_demo_mirror(cfg.workdir / "mirror", **_mirror_args(cfg))
        publish_checksums(built["opus"].values())  # the dumps come with their sha1sums already
        return {"wikipedia": built["wikipedia_base_url"], "opus": built["opus_base_url"]}

    return run_stage(_sources_stage(cfg), build)


def _wiki_servers(cfg: PipelineConfig, base_url: str) -> list[str]:
    """`base_url` (the configured server or the demo mirror), then `data.wikipedia.mirrors` in order."""
    mirrors = [] if cfg.data.demo_mirror else cfg.data.wikipedia.mirrors
    return [base_url, *(m for m in mirrors if m != base_url)]


def latest_record(cfg: PipelineConfig, lang: str) -> Path:
    """Where the fetch stage records the date `latest` resolved to for `lang`."""
    return dump_dates.latest_record_path(_layout(cfg).downloads / "wikipedia", lang, cfg.data.wikipedia.multistream)


def _wiki_download_stage(cfg: PipelineConfig, lang: str, base_url: str) -> Stage | None:
    """The download stage of a dump; None for a `latest` not resolved yet (its file is not known)."""
    wiki = cfg.data.wikipedia
    date = wiki.dump_date
    if date == "latest":
        date = dump_dates.recorded_date(latest_record(cfg, lang))
        if date is None:
            return None
    url = wikipedia.dump_url(base_url, lang, date, wiki.multistream)
    dest = _layout(cfg).downloads / "wikipedia" / wikipedia.dump_name(lang, date, wiki.multistream)
    return download_stage(cfg, f"wikipedia-{lang}", url, dest, mirrors=_wiki_servers(cfg, base_url)[1:])


def fetch_wikipedia(cfg: PipelineConfig, lang: str, base_url: str) -> dict[str, Any]:
    """`_fetch_wikipedia` run as a download stage: reused while the dump it fetched is there unchanged."""
    return recorded(_wiki_download_stage(cfg, lang, base_url), lambda: _fetch_wikipedia(cfg, lang, base_url))


def _fetch_wikipedia(cfg: PipelineConfig, lang: str, base_url: str) -> dict[str, Any]:
    """The verified dump, from `base_url` or the first mirror that has it.

    `date` is the date fetched: `latest` is resolved once (`xlm_core.data.dump_dates`) and recorded in
    the work directory, so a re-run fetches the same dump. `mlflow_params` holds the resolved date
    under `data.wikipedia.resolved_dump_date.<lang>`, for the run's parameters.
    """
    wiki = cfg.data.wikipedia
    servers = _wiki_servers(cfg, base_url)
    record = latest_record(cfg, lang)
    resolution = dump_dates.resolve_dump_date(
        servers, lang, wiki.dump_date, record=record, multistream=wiki.multistream
    )
    try:
        with scoped_limits(cfg):  # data.download's deadline and minimum rate for each dump download
            result, server = dump_dates.fetch_from_servers(
                servers,
                lang,
                resolution.date,
                _layout(cfg).downloads / "wikipedia",
                multistream=wiki.multistream,
                max_bytes=cfg.data.max_download_bytes,
                timeout=cfg.data.download.timeout_s,
                retries=cfg.data.download.retries,
            )
    except dump_dates.DumpDateError as e:
        if resolution.record is None:
            raise
        raise dump_dates.DumpDateError(
            f"{e} The date was resolved from `latest` earlier and recorded in {record}: delete that file to "
            "resolve `latest` again.",
            url=e.url,
        ) from e
    return {
        "lang": lang,
        "path": str(result.path),
        "date": result.date,
        "requested_date": wiki.dump_date,
        "server": server,
        "date_resolved_from": resolution.server,
        "date_resolved_at": resolution.resolved_at,
        "date_record": resolution.record,
        "url": result.url,
        "sha1": result.sha1,
        "md5": result.md5,
        "size": result.size,
        "verified_by": result.verified_by,
        "mlflow_params": {f"data.wikipedia.resolved_dump_date.{lang}": result.date},
    }


def _extract_stage(cfg: PipelineConfig, lang: str, dump: dict[str, Any]) -> Stage:
    return Stage(
        "extract",
        lang,
        cfg.workdir,
        params={
            "max_articles": cfg.data.wikipedia.max_articles,
            "dump_date": dump["date"],
            "max_xml_bytes": cfg.data.unpack.max_wikipedia_xml_bytes,
        },
        inputs=[Path(dump["path"])],
        outputs=[_layout(cfg).mono("text", lang), _layout(cfg).articles("text", lang)],
        code=(*_DATA_CODE, "xlm_core.data.wikipedia"),
        tools=("wikiextractor",),
    )


def extract_wikipedia(cfg: PipelineConfig, lang: str, dump: dict[str, Any]) -> dict[str, Any]:
    out = _layout(cfg).mono("text", lang)

    def compute() -> dict[str, Any]:
        wiki = cfg.data.wikipedia
        stats = wikipedia.extract(
            Path(dump["path"]),
            out,
            processes=wiki.processes,
            max_articles=wiki.max_articles,
            max_xml_bytes=cfg.data.unpack.max_wikipedia_xml_bytes,
            articles_path=_layout(cfg).articles("text", lang),
        )
        return {"lang": lang, "path": str(out), "dump_date": dump["date"], **stats}

    return run_stage(_extract_stage(cfg, lang, dump), compute)


def _opus_dest(cfg: PipelineConfig, index: int) -> Path:
    item = cfg.data.parallel[index]
    l1, l2 = sorted(item.pair.split("-"))
    return _layout(cfg).downloads / "opus" / f"{item.corpus}-{item.version}-{l1}-{l2}.txt.zip"


def _opus_api(cfg: PipelineConfig) -> str | None:
    """The OPUS API that sizes each zip; none with the demo mirror, which publishes SHA-256 lists instead."""
    return None if cfg.data.demo_mirror else cfg.data.opus_api_url


def _opus_download_stage(cfg: PipelineConfig, index: int, base_url: str) -> Stage | None:
    """The download stage of an OPUS zip; None for a `latest` release, which can change."""
    item = cfg.data.parallel[index]
    if item.version == "latest":
        return None
    url = opus.moses_url(base_url, item.corpus, item.version, item.pair)
    dest = _opus_dest(cfg, index)
    return download_stage(cfg, dest.name.removesuffix(".txt.zip"), url, dest, api=_opus_api(cfg))


def fetch_opus(cfg: PipelineConfig, index: int, base_url: str) -> str:
    """One OPUS moses zip, downloaded from `base_url` and verified: by the size the OPUS API gives, by
    the demo mirror's SHA-256 list, or (no API configured) by the server's Content-Length only, with a
    warning. Run as a download stage: reused while the zip it fetched is there unchanged."""
    return recorded(_opus_download_stage(cfg, index, base_url), lambda: _fetch_opus(cfg, index, base_url))


def _fetch_opus(cfg: PipelineConfig, index: int, base_url: str) -> str:
    item = cfg.data.parallel[index]
    dest = _opus_dest(cfg, index)
    limits = fetch_limits(cfg)
    api = _opus_api(cfg)
    if api:
        with scoped_limits(cfg):
            return opus.fetch_moses(
                api,
                item.corpus,
                item.version,
                item.pair,
                dest,
                base_url=base_url,
                max_bytes=limits["max_bytes"],
                timeout=limits["timeout"],
                retries=limits["retries"],
            )
    url = opus.moses_url(base_url, item.corpus, item.version, item.pair)
    checks = mirror_checks(url, "demo mirror") if cfg.data.demo_mirror else {}
    return str(download(url, dest, **checks, **limits))


def _unpack_params(cfg: PipelineConfig) -> dict[str, Any]:
    """`opus.read_moses_zip`'s caps from `data.unpack`."""
    unpack = cfg.data.unpack
    return {
        "max_member_bytes": unpack.max_opus_member_bytes,
        "max_ratio": unpack.max_ratio,
        "max_line_bytes": unpack.max_line_bytes,
    }


def _read_parallel_stage(cfg: PipelineConfig, pair: str, zip_paths: list[str]) -> Stage:
    layout = _layout(cfg)
    return Stage(
        "read-parallel",
        pair,
        cfg.workdir,
        params=_unpack_params(cfg),
        inputs=[Path(p) for p in zip_paths],
        outputs=[layout.para("text", pair, lang) for lang in pair.split("-")],
        code=(*_DATA_CODE, "xlm_core.data.opus", "xlm_core.data.archives"),
    )


def read_parallel(cfg: PipelineConfig, pair: str, zip_paths: list[str]) -> dict[str, Any]:
    """All corpora of one pair, concatenated in config order, into `text/para/<pair>.<lang>.all`."""
    return run_stage(_read_parallel_stage(cfg, pair, zip_paths), lambda: _read_parallel(cfg, pair, zip_paths))


def _read_parallel(cfg: PipelineConfig, pair: str, zip_paths: list[str]) -> dict[str, Any]:
    layout = _layout(cfg)
    l1, l2 = pair.split("-")
    outputs = [layout.para("text", pair, l1), layout.para("text", pair, l2)]
    parts: list[tuple[Path, Path]] = []
    counts: list[int] = []
    stats: dict[str, int] = {"dropped_long_pairs": 0}
    for i, zip_path in enumerate(zip_paths):
        p1 = outputs[0].with_name(f"{outputs[0].name}.part{i}")
        p2 = outputs[1].with_name(f"{outputs[1].name}.part{i}")
        counts.append(opus.read_moses_zip(Path(zip_path), pair, p1, p2, stats=stats, **_unpack_params(cfg)))
        parts.append((p1, p2))
    for side, out in enumerate(outputs):
        if len(parts) == 1:  # the usual case: the part already is the whole, complete text
            os.replace(parts[0][side], out)
            continue
        with atomic_open(out, "wb") as handle:
            for part in parts:
                with open(part[side], "rb") as src:
                    shutil.copyfileobj(src, handle, 1 << 20)
        for part in parts:
            part[side].unlink()
    # `parts`: the pairs of each corpus, in order (the cleaning stage applies each corpus's own settings).
    zips = [Path(z).name for z in zip_paths]
    sizes = [{"zip": name, "pairs": n} for name, n in zip(zips, counts, strict=True)]
    return {"pair": pair, "pairs": sum(counts), "parts": sizes, "paths": [str(p) for p in outputs], **stats}


def _split_files(cfg: PipelineConfig, label: str) -> tuple[list[Path], Path | None, dict[str, list[Path]]]:
    """Inputs (cleaned or extracted text; `clean_stages.split_sources`), a language's article counts, and
    the per-split outputs of a language (`en`) or a pair (`en-fr`)."""
    layout = _layout(cfg)
    inputs, articles = split_sources(cfg, label)
    if "-" not in label:
        return inputs, articles, {s: [layout.mono("split", label, s)] for s in SPLITS}
    return inputs, None, {s: [layout.para("split", label, lang, s) for lang in label.split("-")] for s in SPLITS}


def _split_stage(cfg: PipelineConfig, label: str) -> Stage:
    inputs, articles, outputs = _split_files(cfg, label)
    return Stage(
        "split",
        label,
        cfg.workdir,
        params={"valid_size": cfg.data.valid_size, "test_size": cfg.data.test_size, "seed": cfg.experiment.seed},
        inputs=[*inputs, *([articles] if articles else [])],
        outputs=[p for paths in outputs.values() for p in paths],
        code=(*_DATA_CODE, "xlm_core.data.split"),
    )


def _split(cfg: PipelineConfig, label: str) -> dict[str, Any]:
    """A language by whole articles (valid/test articles are not in train), a pair by line."""
    inputs, articles, outputs = _split_files(cfg, label)
    sizes = {"valid_size": cfg.data.valid_size, "test_size": cfg.data.test_size, "seed": cfg.experiment.seed}
    if articles is not None:
        return run_stage(_split_stage(cfg, label), lambda: split.split_articles(inputs[0], articles, outputs, **sizes))
    return run_stage(_split_stage(cfg, label), lambda: split.split_lines(inputs, outputs, **sizes))


def split_mono(cfg: PipelineConfig, lang: str) -> dict[str, Any]:
    return _split(cfg, lang)


def split_para(cfg: PipelineConfig, pair: str) -> dict[str, Any]:
    return _split(cfg, pair)


def workdir_id(cfg: PipelineConfig) -> str:
    """The work directory's random id (`xlm_core.stage_cache.root_id`): cached results name it, so a
    deleted or new work directory never reuses a cache entry that points at files it does not have."""
    return root_id(cfg.workdir)


def source_cache_key(cfg: PipelineConfig, source: str, item: str | int, base_url: str) -> str | None:
    """Prefect cache key of one download task: the key of its download stage (what is fetched, from where,
    into which work directory; `xlm_core.data.download_stages`). None (run it) once the file it fetched
    was deleted or changed, for a Wikipedia `latest` not resolved yet, and for an OPUS `latest`."""
    if source == "wikipedia":
        stage = _wiki_download_stage(cfg, str(item), base_url)
    else:
        stage = _opus_download_stage(cfg, int(item), base_url)
    return None if stage is None else stage.cache_key()


# Stage specs by name, for `xlm_core.data.stages.cache_key`.
STAGE_BUILDERS = {
    "demo-mirror": _sources_stage,
    "extract": _extract_stage,
    "read-parallel": _read_parallel_stage,
    "split": _split_stage,
}
