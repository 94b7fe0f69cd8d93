"""Data stages that obtain the raw text: the sources (or the offline demo mirror), Wikipedia dumps and
their extraction, OPUS moses zips read into parallel text, and the train/valid/test split.

Each function reads the experiment config and the work layout, does one step and returns small
serialisable values (paths, statistics). `xlm_core.data.stages` re-exports them with the text
stages that follow (tokenize, BPE, dictionary, binarize).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from xlm_core.config import PipelineConfig
from xlm_core.data import demo_mirror, opus, split, wikipedia
from xlm_core.data.download import download
from xlm_core.io import atomic_open
from xlm_core.paths import SPLITS, WorkLayout
from xlm_core.stage_cache import Stage, root_id, run_stage

__all__ = [
    "STAGE_BUILDERS",
    "extract_wikipedia",
    "fetch_opus",
    "fetch_wikipedia",
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
        code=(*_DATA_CODE, "xlm_core.data.demo_mirror", "xlm_core.data.manpage"),
    )


def prepare_sources(cfg: PipelineConfig) -> dict[str, str]:
    """Base URLs of the Wikipedia and OPUS servers; builds the offline demo mirror when configured."""
    if not cfg.data.demo_mirror:
        return {"wikipedia": cfg.data.wikipedia.base_url, "opus": cfg.data.opus_base_url}

    def build() -> dict[str, str]:
        built = demo_mirror.build_demo_mirror(cfg.workdir / "mirror", **_mirror_args(cfg))
        return {"wikipedia": built["wikipedia_base_url"], "opus": built["opus_base_url"]}

    return run_stage(_sources_stage(cfg), build)


def fetch_wikipedia(cfg: PipelineConfig, lang: str, base_url: str) -> dict[str, Any]:
    """The verified dump; `date` is the resolved dump date (recorded even when `latest` was asked)."""
    wiki = cfg.data.wikipedia
    result = wikipedia.fetch_dump(
        base_url,
        lang,
        wiki.dump_date,
        _layout(cfg).downloads / "wikipedia",
        multistream=wiki.multistream,
        max_bytes=cfg.data.max_download_bytes,
    )
    return {
        "lang": lang,
        "path": str(result.path),
        "date": result.date,
        "url": result.url,
        "sha1": result.sha1,
        "md5": result.md5,
        "size": result.size,
        "verified_by": result.verified_by,
    }


def _extract_stage(cfg: PipelineConfig, lang: str, dump: dict[str, Any]) -> Stage:
    return Stage(
        "extract",
        lang,
        cfg.workdir,
        params={"max_articles": cfg.data.wikipedia.max_articles, "dump_date": dump["date"]},
        inputs=[Path(dump["path"])],
        outputs=[_layout(cfg).mono("text", lang)],
        code=(*_DATA_CODE, "xlm_core.data.wikipedia"),
        tools=("wikiextractor",),
    )


def extract_wikipedia(cfg: PipelineConfig, lang: str, dump: dict[str, Any]) -> dict[str, Any]:
    out = _layout(cfg).mono("text", lang)

    def compute() -> dict[str, Any]:
        wiki = cfg.data.wikipedia
        stats = wikipedia.extract(Path(dump["path"]), out, processes=wiki.processes, max_articles=wiki.max_articles)
        return {"lang": lang, "path": str(out), "dump_date": dump["date"], **stats}

    return run_stage(_extract_stage(cfg, lang, dump), compute)


def fetch_opus(cfg: PipelineConfig, index: int, base_url: str) -> str:
    """One OPUS moses zip: looked up through the OPUS API (URL and size) unless none is configured
    or the demo mirror stands in for OPUS; downloaded from `base_url` either way."""
    item = cfg.data.parallel[index]
    l1, l2 = sorted(item.pair.split("-"))
    dest = _layout(cfg).downloads / "opus" / f"{item.corpus}-{item.version}-{l1}-{l2}.txt.zip"
    if cfg.data.opus_api_url and not cfg.data.demo_mirror:
        return opus.fetch_moses(
            cfg.data.opus_api_url,
            item.corpus,
            item.version,
            item.pair,
            dest,
            base_url=base_url,
            max_bytes=cfg.data.max_download_bytes,
        )
    url = opus.moses_url(base_url, item.corpus, item.version, item.pair)
    return str(download(url, dest, max_bytes=cfg.data.max_download_bytes))


def _read_parallel_stage(cfg: PipelineConfig, pair: str, zip_paths: list[str]) -> Stage:
    layout = _layout(cfg)
    return Stage(
        "read-parallel",
        pair,
        cfg.workdir,
        params={"max_member_bytes": cfg.data.max_member_bytes},
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
    total = 0
    for i, zip_path in enumerate(zip_paths):
        p1 = outputs[0].with_name(f"{outputs[0].name}.part{i}")
        p2 = outputs[1].with_name(f"{outputs[1].name}.part{i}")
        total += opus.read_moses_zip(Path(zip_path), pair, p1, p2, max_member_bytes=cfg.data.max_member_bytes)
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
    return {"pair": pair, "pairs": total, "paths": [str(p) for p in outputs]}


def _split_files(cfg: PipelineConfig, label: str) -> tuple[list[Path], dict[str, list[Path]]]:
    """Inputs and per-split outputs of a language (`en`) or a pair (`en-fr`)."""
    layout = _layout(cfg)
    if "-" not in label:
        return [layout.mono("text", label)], {s: [layout.mono("split", label, s)] for s in SPLITS}
    langs = label.split("-")
    inputs = [layout.para("text", label, lang) for lang in langs]
    return inputs, {s: [layout.para("split", label, lang, s) for lang in langs] for s in SPLITS}


def _split_stage(cfg: PipelineConfig, label: str) -> Stage:
    inputs, outputs = _split_files(cfg, label)
    return Stage(
        "split",
        label,
        cfg.workdir,
        params={"valid_size": cfg.data.valid_size, "test_size": cfg.data.test_size, "seed": cfg.experiment.seed},
        inputs=inputs,
        outputs=[p for paths in outputs.values() for p in paths],
        code=(*_DATA_CODE, "xlm_core.data.split"),
    )


def _split(cfg: PipelineConfig, label: str) -> dict[str, Any]:
    inputs, outputs = _split_files(cfg, label)
    data = cfg.data
    return run_stage(
        _split_stage(cfg, label),
        lambda: split.split_lines(
            inputs, outputs, valid_size=data.valid_size, test_size=data.test_size, seed=cfg.experiment.seed
        ),
    )


def split_mono(cfg: PipelineConfig, lang: str) -> dict[str, Any]:
    return _split(cfg, lang)


def split_para(cfg: PipelineConfig, pair: str) -> dict[str, Any]:
    return _split(cfg, pair)


def workdir_id(cfg: PipelineConfig) -> str:
    """The work directory's random id (`xlm_core.stage_cache.root_id`): cached results name it, so a
    deleted or new work directory never reuses a cache entry that points at files it does not have."""
    return root_id(cfg.workdir)


def source_cache_key(cfg: PipelineConfig, source: str, item: str | int, base_url: str) -> str | None:
    """Cache identity of one downloaded file: what it is (URL and pinned date or version) and where it
    lives (the work directory's id). None (no caching) for `latest`, which can change."""
    if source == "wikipedia":
        wiki = cfg.data.wikipedia
        if wiki.dump_date == "latest":
            return None
        what = wikipedia.dump_url(base_url, str(item), wiki.dump_date, wiki.multistream)
    else:
        corpus = cfg.data.parallel[int(item)]
        if corpus.version == "latest":
            return None
        what = f"{opus.moses_url(base_url, corpus.corpus, corpus.version, corpus.pair)} {cfg.data.opus_api_url}"
    digest = hashlib.sha256(f"{what} {cfg.data.max_download_bytes}".encode()).hexdigest()[:20]
    return f"{source}-{item}-{digest}-{workdir_id(cfg)}"


# Stage specs by name, for `xlm_core.data.stages.cache_key`.
STAGE_BUILDERS = {
    "demo-mirror": _sources_stage,
    "extract": _extract_stage,
    "read-parallel": _read_parallel_stage,
    "split": _split_stage,
}
