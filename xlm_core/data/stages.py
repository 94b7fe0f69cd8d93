"""Config-driven data stages, one function per pipeline step (each wrapped by one Prefect task).

The source stages (download, extract, read, split) live in `xlm_core.data.source_stages` and are
re-exported here; this module holds the text stages (tokenize, BPE, dictionary, binarize).

Each function reads the experiment config and the work layout, does one step and returns small
serialisable values (paths, statistics). Inputs and outputs follow `xlm_core.paths.WorkLayout`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from xlm_core.config import PipelineConfig
from xlm_core.config.limits import pair_max_len
from xlm_core.data import bpe, tokenize
from xlm_core.data.binarize import binarize, binarized_paths, load_binarized
from xlm_core.data.clean_stages import clean_mono, clean_para, clean_stage
from xlm_core.data.dictionary import Dictionary
from xlm_core.data.length_filter import pair_stats, write_pair_stats
from xlm_core.data.source_stages import (
    STAGE_BUILDERS,
    extract_wikipedia,
    fetch_opus,
    fetch_wikipedia,
    prepare_sources,
    read_parallel,
    source_cache_key,
    split_mono,
    split_para,
    workdir_id,
)
from xlm_core.paths import SPLITS, WorkLayout
from xlm_core.stage_cache import Stage, run_stage

__all__ = [
    "TextUnit",
    "apply_bpe_unit",
    "binarize_unit",
    "build_dictionary",
    "cache_key",
    "clean_mono",
    "clean_para",
    "extract_wikipedia",
    "fetch_opus",
    "filter_pairs_unit",
    "fetch_wikipedia",
    "learn_bpe_codes",
    "pair_units",
    "plan_data",
    "prepare_sources",
    "read_parallel",
    "run_all",
    "run_sources",
    "run_text_stages",
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
    """What to fetch and prepare: monolingual languages, pairs and their OPUS corpora, text units."""
    corpora: dict[str, list[int]] = {pair: [] for pair in cfg.data.pairs}
    for index, item in enumerate(cfg.data.parallel):
        corpora["-".join(sorted(item.pair.split("-")))].append(index)
    return {
        "mono": cfg.data.mono,
        "pairs": cfg.data.pairs,
        "pair_corpora": corpora,
        "units": text_units(cfg),
        "pair_units": pair_units(cfg),
    }


def _layout(cfg: PipelineConfig) -> WorkLayout:
    return WorkLayout(cfg.workdir)


_DATA_CODE = ("xlm_core.data.stages", "xlm_core.io")


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


def pair_units(cfg: PipelineConfig) -> list[dict[str, str]]:
    """Every (pair, split) whose two binarized sides the pair filter counts."""
    return [{"pair": pair, "split": s, "label": f"{pair}.{s}"} for pair in cfg.data.pairs for s in SPLITS]


def _pair_sides(cfg: PipelineConfig, unit: dict[str, str]) -> list[Path]:
    layout = _layout(cfg)
    return [layout.binarized(unit["split"], lang, unit["pair"]) for lang in unit["pair"].split("-")]


def _pair_stats_path(cfg: PipelineConfig, unit: dict[str, str]) -> Path:
    return _layout(cfg).root / "bin" / f"{unit['split']}.{unit['pair']}.pairs.json"


def _filter_pairs_stage(cfg: PipelineConfig, unit: dict[str, str]) -> Stage:
    return Stage(
        "filter-pairs",
        unit["label"],
        cfg.workdir,
        params={"max_len": pair_max_len(cfg.model, cfg.objectives, unit["split"])},
        inputs=[binarized_paths(prefix)["offsets"] for prefix in _pair_sides(cfg, unit)],
        outputs=[_pair_stats_path(cfg, unit)],
        code=(*_DATA_CODE, "xlm_core.data.length_filter"),
    )


def filter_pairs_unit(cfg: PipelineConfig, unit: dict[str, str]) -> dict[str, Any]:
    """Count what training will remove from one pair split (empty sides, sides above the split's
    limit: objectives.max_len for train, `config.limits.pair_max_len` for valid/test).

    Pairs are only filterable once both sides are binarized, so this runs after binarize; training
    applies the same rule (`length_filter.filter_pairs`) when it loads the sets. The counts go to
    `bin/<split>.<pair>.pairs.json` and are returned for MLflow and the Prefect data report.
    """
    out = _pair_stats_path(cfg, unit)

    def compute() -> dict[str, Any]:
        first, second = (load_binarized(prefix) for prefix in _pair_sides(cfg, unit))
        if len(first) != len(second):
            raise ValueError(
                f"filter-pairs {unit['label']}: {first.prefix} has {len(first)} sentences, {second.prefix} "
                f"{len(second)}; the sides must be line-aligned (re-run split-{unit['pair']} and binarize)"
            )
        max_len = pair_max_len(cfg.model, cfg.objectives, unit["split"])
        stats = pair_stats(first.lengths, second.lengths, max_len)
        write_pair_stats(out, stats)
        logger.info(
            "pairs %s: %d, removed %d empty and %d with a side above max_len=%d (longest side %d), %d kept",
            unit["label"],
            stats["pairs"],
            stats["removed_empty"],
            stats["removed_long"],
            max_len,
            stats["longest_side"],
            stats["kept"],
        )
        return {"pair": unit["pair"], "split": unit["split"], "path": str(out), **stats}

    return run_stage(_filter_pairs_stage(cfg, unit), compute)


_STAGES = {
    **STAGE_BUILDERS,
    "tokenize": _tokenize_stage,
    "learn-bpe": _learn_bpe_stage,
    "apply-bpe": _apply_bpe_stage,
    "dictionary": _dictionary_stage,
    "binarize": _binarize_stage,
    "filter-pairs": _filter_pairs_stage,
    "clean": clean_stage,
}


def cache_key(stage: str, cfg: PipelineConfig, *args: Any) -> str | None:
    """Prefect cache key of a data task: the stage's input address when a finished run with unchanged
    inputs, config, code and intact outputs can be reused; None (run it) otherwise."""
    if stage == "demo-mirror" and not cfg.data.demo_mirror:
        return None
    spec = _STAGES[stage](cfg, *args)
    return None if spec is None else spec.cache_key()  # None: a stage switched off (cleaning)


def run_all(cfg: PipelineConfig) -> dict[str, Any]:
    """Every data stage in order, in this process (what the prepare-data flow does, without Prefect).

    For benchmarks, tests and debugging; the flow runs the same functions as tasks, in parallel.
    """
    run_sources(cfg)
    return run_text_stages(cfg)


def run_sources(cfg: PipelineConfig) -> None:
    """The source stages of `run_all`: download, extract, read, clean and split into train/valid/test text."""
    plan = plan_data(cfg)
    sources = prepare_sources(cfg)
    for lang in plan["mono"]:
        extract_wikipedia(cfg, lang, fetch_wikipedia(cfg, lang, sources["wikipedia"]))
        clean_mono(cfg, lang)
        split_mono(cfg, lang)
    for pair, indices in plan["pair_corpora"].items():
        clean_para(cfg, pair, read_parallel(cfg, pair, [fetch_opus(cfg, i, sources["opus"]) for i in indices]))
        split_para(cfg, pair)


def run_text_stages(cfg: PipelineConfig) -> dict[str, Any]:
    """The text stages of `run_all` on the split files: tokenize, BPE, dictionary, binarize, pair filter."""
    plan = plan_data(cfg)
    for unit in plan["units"]:
        tokenize_unit(cfg, unit)
    learn_bpe_codes(cfg)
    for unit in plan["units"]:
        apply_bpe_unit(cfg, unit)
    dictionary = build_dictionary(cfg)
    binarized = [binarize_unit(cfg, unit) for unit in plan["units"]]
    filtered = [filter_pairs_unit(cfg, unit) for unit in plan["pair_units"]]
    return {"dictionary": dictionary, "binarized": binarized, "filtered": filtered}
