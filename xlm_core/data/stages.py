"""Config-driven data stages, one function per pipeline step (each wrapped by one Prefect task).

Each function reads the experiment config and the work layout, does one step and returns small
serialisable values (paths, statistics). Inputs and outputs follow `xlm_core.paths.WorkLayout`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from xlm_core.config import PipelineConfig
from xlm_core.data import bpe, demo_mirror, opus, split, tokenize, wikipedia
from xlm_core.data.binarize import binarize, binarized_paths
from xlm_core.data.dictionary import Dictionary
from xlm_core.data.download import download
from xlm_core.io import atomic_open
from xlm_core.paths import SPLITS, WorkLayout
from xlm_core.stage_cache import Stage, root_id, run_stage

__all__ = [
    "TextUnit",
    "apply_bpe_unit",
    "binarize_unit",
    "build_dictionary",
    "cache_key",
    "extract_wikipedia",
    "fetch_opus",
    "fetch_wikipedia",
    "learn_bpe_codes",
    "plan_data",
    "prepare_sources",
    "read_parallel",
    "run_all",
    "split_mono",
    "source_cache_key",
    "split_para",
    "text_units",
    "tokenize_unit",
    "workdir_id",
]

logger = logging.getLogger(__name__)

TextUnit = dict[str, Any]  # {"lang": "en", "pair": "en-fr" | None, "split": "train", "label": "en-fr.en.train"}


def plan_data(cfg: PipelineConfig) -> dict[str, Any]:
    """What to fetch and prepare: monolingual languages, OPUS corpora per pair, text units."""
    corpora: dict[str, list[int]] = {pair: [] for pair in cfg.data.pairs}
    for index, item in enumerate(cfg.data.parallel):
        corpora["-".join(sorted(item.pair.split("-")))].append(index)
    return {"mono": cfg.data.mono, "pair_corpora": corpora, "units": text_units(cfg)}


def _layout(cfg: PipelineConfig) -> WorkLayout:
    return WorkLayout(cfg.workdir)


_DATA_CODE = ("xlm_core.data.stages", "xlm_core.io")


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


def text_units(cfg: PipelineConfig) -> list[TextUnit]:
    """Every (language, optional pair, split) text file the pipeline tokenizes, BPEs and binarizes."""
    units = [{"lang": lang, "pair": None, "split": s, "label": f"{lang}.{s}"} for lang in cfg.data.mono for s in SPLITS]
    for pair in cfg.data.pairs:
        units += [
            {"lang": lang, "pair": pair, "split": s, "label": f"{pair}.{lang}.{s}"}
            for lang in pair.split("-")
            for s in SPLITS
        ]
    return units


def _unit_path(layout: WorkLayout, stage: str, unit: TextUnit) -> Path:
    if unit["pair"]:
        return layout.para(stage, unit["pair"], unit["lang"], unit["split"])
    return layout.mono(stage, unit["lang"], unit["split"])


_SEGMENTERS = ("sacremoses", "jieba", "fugashi", "unidic-lite", "pythainlp")


def _tokenize_stage(cfg: PipelineConfig, unit: TextUnit) -> Stage:
    layout = _layout(cfg)
    return Stage(
        "tokenize",
        unit["label"],
        cfg.workdir,
        params={"lang": unit["lang"], "lowercase": cfg.tokenization.lowercase_for(unit["lang"])},
        inputs=[_unit_path(layout, "split", unit)],
        outputs=[_unit_path(layout, "tok", unit)],
        code=(*_DATA_CODE, "xlm_core.data.tokenize"),
        tools=_SEGMENTERS,
    )


def tokenize_unit(cfg: PipelineConfig, unit: TextUnit) -> dict[str, Any]:
    layout = _layout(cfg)
    out = _unit_path(layout, "tok", unit)

    def compute() -> dict[str, Any]:
        stats = tokenize.tokenize_file(
            _unit_path(layout, "split", unit),
            out,
            lang=unit["lang"],
            lowercase=cfg.tokenization.lowercase_for(unit["lang"]),
            workers=cfg.tokenization.workers,
        )
        return {"path": str(out), **(stats or {})}

    return run_stage(_tokenize_stage(cfg, unit), compute)


def _bpe_inputs(cfg: PipelineConfig) -> dict[str, list[Path]]:
    """Per language, its Wikipedia and parallel sides' tokenized training text (sampled as one text)."""
    inputs: dict[str, list[Path]] = {}
    for unit in text_units(cfg):
        if unit["split"] == "train":
            inputs.setdefault(unit["lang"], []).append(_unit_path(_layout(cfg), "tok", unit))
    return inputs


def _learn_bpe_stage(cfg: PipelineConfig) -> Stage:
    layout = _layout(cfg)
    b = cfg.bpe
    return Stage(
        "learn-bpe",
        "codes",
        cfg.workdir,
        params={"codes": b.codes, "sample_size": b.sample_size, "alpha": b.sample_alpha, "seed": cfg.experiment.seed},
        inputs=[p for paths in _bpe_inputs(cfg).values() for p in paths],
        outputs=[layout.root / "bpe" / "sample.txt", layout.codes],
        code=(*_DATA_CODE, "xlm_core.data.bpe"),
        tools=("fastBPE",),
    )


def learn_bpe_codes(cfg: PipelineConfig) -> dict[str, Any]:
    """fastBPE codes learned on a language-balanced sample (q ~ p^alpha) of the training text."""
    layout = _layout(cfg)

    def compute() -> dict[str, Any]:
        sample = layout.root / "bpe" / "sample.txt"
        counts = bpe.sample_for_bpe(
            _bpe_inputs(cfg),
            sample,
            sample_size=cfg.bpe.sample_size,
            alpha=cfg.bpe.sample_alpha,
            seed=cfg.experiment.seed,
        )
        bpe.learn_bpe(sample, layout.codes, cfg.bpe.codes)
        return {"codes": str(layout.codes), "sample_lines": counts}

    return run_stage(_learn_bpe_stage(cfg), compute)


def _apply_bpe_stage(cfg: PipelineConfig, unit: TextUnit) -> Stage:
    layout = _layout(cfg)
    return Stage(
        "apply-bpe",
        unit["label"],
        cfg.workdir,
        inputs=[_unit_path(layout, "tok", unit), layout.codes],
        outputs=[_unit_path(layout, "bpe", unit)],
        code=(*_DATA_CODE, "xlm_core.data.bpe"),
        tools=("fastBPE",),
    )


def apply_bpe_unit(cfg: PipelineConfig, unit: TextUnit) -> str:
    layout = _layout(cfg)
    out = _unit_path(layout, "bpe", unit)

    def compute() -> str:
        bpe.apply_bpe(_unit_path(layout, "tok", unit), out, layout.codes, workers=cfg.tokenization.workers)
        return str(out)

    return run_stage(_apply_bpe_stage(cfg, unit), compute)


def _dictionary_stage(cfg: PipelineConfig) -> Stage:
    layout = _layout(cfg)
    return Stage(
        "dictionary",
        "vocab",
        cfg.workdir,
        params={"max_vocab": cfg.bpe.max_vocab, "min_count": cfg.bpe.min_count},
        inputs=[_unit_path(layout, "bpe", u) for u in text_units(cfg) if u["split"] == "train"],
        outputs=[layout.bpe_vocab, layout.dictionary],
        code=(*_DATA_CODE, "xlm_core.data.bpe", "xlm_core.data.dictionary"),
        tools=("fastBPE",),
    )


def build_dictionary(cfg: PipelineConfig) -> dict[str, Any]:
    """Vocabulary counted on all BPE'd training text, written in the XLM dictionary format."""
    layout = _layout(cfg)

    def compute() -> dict[str, Any]:
        train_files = [_unit_path(layout, "bpe", u) for u in text_units(cfg) if u["split"] == "train"]
        bpe.get_vocab(train_files, layout.bpe_vocab)
        dico = Dictionary.from_vocab(layout.bpe_vocab, max_vocab=cfg.bpe.max_vocab, min_count=cfg.bpe.min_count)
        dico.write(layout.dictionary)
        return {"path": str(layout.dictionary), "size": len(dico)}

    return run_stage(_dictionary_stage(cfg), compute)


def _binarize_stage(cfg: PipelineConfig, unit: TextUnit) -> Stage:
    layout = _layout(cfg)
    prefix = layout.binarized(unit["split"], unit["lang"], unit["pair"])
    return Stage(
        "binarize",
        unit["label"],
        cfg.workdir,
        inputs=[_unit_path(layout, "bpe", unit), layout.dictionary],
        outputs=list(binarized_paths(prefix).values()),
        code=(*_DATA_CODE, "xlm_core.data.binarize", "xlm_core.data.dictionary"),
    )


def binarize_unit(cfg: PipelineConfig, unit: TextUnit) -> dict[str, Any]:
    layout = _layout(cfg)
    prefix = layout.binarized(unit["split"], unit["lang"], unit["pair"])

    def compute() -> dict[str, Any]:
        stats = binarize(_unit_path(layout, "bpe", unit), Dictionary.read(layout.dictionary), prefix)
        return {"prefix": str(prefix), **stats}

    return run_stage(_binarize_stage(cfg, unit), compute)


_STAGES = {
    "extract": _extract_stage,
    "read-parallel": _read_parallel_stage,
    "split": _split_stage,
    "tokenize": _tokenize_stage,
    "learn-bpe": _learn_bpe_stage,
    "apply-bpe": _apply_bpe_stage,
    "dictionary": _dictionary_stage,
    "binarize": _binarize_stage,
    "demo-mirror": _sources_stage,
}


def cache_key(stage: str, cfg: PipelineConfig, *args: Any) -> str | None:
    """Prefect cache key of a data task: the stage's input address when a finished run with unchanged
    inputs, config, code and intact outputs can be reused; None (run it) otherwise."""
    if stage == "demo-mirror" and not cfg.data.demo_mirror:
        return None
    return _STAGES[stage](cfg, *args).cache_key()


def run_all(cfg: PipelineConfig) -> dict[str, Any]:
    """Every data stage in order, in this process (what the prepare-data flow does, without Prefect).

    For benchmarks, tests and debugging; the flow runs the same functions as tasks, in parallel.
    """
    plan = plan_data(cfg)
    sources = prepare_sources(cfg)
    for lang in plan["mono"]:
        extract_wikipedia(cfg, lang, fetch_wikipedia(cfg, lang, sources["wikipedia"]))
        split_mono(cfg, lang)
    for pair, indices in plan["pair_corpora"].items():
        read_parallel(cfg, pair, [fetch_opus(cfg, i, sources["opus"]) for i in indices])
        split_para(cfg, pair)
    for unit in plan["units"]:
        tokenize_unit(cfg, unit)
    learn_bpe_codes(cfg)
    for unit in plan["units"]:
        apply_bpe_unit(cfg, unit)
    dictionary = build_dictionary(cfg)
    binarized = [binarize_unit(cfg, unit) for unit in plan["units"]]
    return {"dictionary": dictionary, "binarized": binarized}


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
