"""The cleaning stage bound to the experiment config and the work layout: per Wikipedia language and per
parallel pair, between extraction / reading and the split.

Order: extract (read) -> clean -> split. Cleaning the whole corpus before it is split makes the
deduplication hold across splits for free: every normalised sentence (pair) is kept once in the
corpus, so no valid or test sentence is also in train, and valid/test still get their full line
budget. The stage's cache parameters are the resolved filter settings (`xlm_core.config.cleaning`),
so an edited threshold reruns cleaning and what follows it, and the extraction is reused.

With `cleaning.enabled: false` the stage does nothing and the split reads the extracted text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xlm_core.config import PipelineConfig
from xlm_core.config.cleaning import resolve_filters
from xlm_core.data.clean import Segment, clean_files
from xlm_core.paths import WorkLayout
from xlm_core.stage_cache import Stage, run_stage

__all__ = ["clean_mono", "clean_para", "clean_stage", "split_sources"]

_CODE = (
    "xlm_core.data.clean_stages",
    "xlm_core.data.clean",
    "xlm_core.data.dedup",
    "xlm_core.data.lid",
    "xlm_core.io",
)
_TOOLS = ("pycld2", "datasketch")


def _layout(cfg: PipelineConfig) -> WorkLayout:
    return WorkLayout(cfg.workdir)


def _files(cfg: PipelineConfig, stage: str, label: str) -> tuple[list[Path], Path | None]:
    """Text files of a language (with its article counts) or the sides of a pair, at `stage`."""
    layout = _layout(cfg)
    if "-" not in label:
        return [layout.mono(stage, label)], layout.articles(stage, label)
    return [layout.para(stage, label, lang) for lang in label.split("-")], None


def split_sources(cfg: PipelineConfig, label: str) -> tuple[list[Path], Path | None]:
    """What the split of `label` reads: the cleaned text when cleaning is on, else the extracted text."""
    return _files(cfg, "clean" if cfg.cleaning.enabled else "text", label)


def _pair_segments(cfg: PipelineConfig, pair: str, read: dict[str, Any]) -> list[Segment]:
    """One segment per OPUS corpus of the pair, in the order read-parallel concatenated them."""
    corpora = [c for c in cfg.data.parallel if "-".join(sorted(c.pair.split("-"))) == pair]
    parts = read.get("parts")
    if parts is None or len(parts) != len(corpora):
        raise ValueError(
            f"clean {pair}: the read-parallel result has {len(parts or [])} corpus parts for {len(corpora)} "
            "corpora in data.parallel; re-run the read-parallel stage"
        )
    return [
        Segment(f"{c.corpus}-{c.version}", resolve_filters(cfg.cleaning, corpus=c.corpus), int(part["pairs"]))
        for c, part in zip(corpora, parts, strict=True)
    ]


def _segments(cfg: PipelineConfig, label: str, read: dict[str, Any] | None) -> list[Segment]:
    if "-" not in label:
        return [Segment(f"wikipedia-{label}", resolve_filters(cfg.cleaning, lang=label))]
    return _pair_segments(cfg, label, read or {})


def clean_stage(cfg: PipelineConfig, label: str, read: dict[str, Any] | None = None) -> Stage | None:
    """The stage spec of cleaning `label` (a language or a pair); None when cleaning is off."""
    if not cfg.cleaning.enabled:
        return None
    inputs, articles = _files(cfg, "text", label)
    outputs, articles_out = _files(cfg, "clean", label)
    segments = _segments(cfg, label, read)
    return Stage(
        "clean",
        label,
        cfg.workdir,
        params={
            "segments": [[s.name, s.lines, s.filters] for s in segments],
            "num_perm": cfg.cleaning.near_dedup_num_perm,
        },
        inputs=[*inputs, *([articles] if articles else [])],
        outputs=[*outputs, *([articles_out] if articles_out else [])],
        code=_CODE,
        tools=_TOOLS,
    )


def _clean(cfg: PipelineConfig, label: str, read: dict[str, Any] | None) -> dict[str, Any]:
    key = {"pair": label} if "-" in label else {"lang": label}
    stage = clean_stage(cfg, label, read)
    if stage is None:
        return {**key, "enabled": False}
    inputs, articles = _files(cfg, "text", label)
    outputs, articles_out = _files(cfg, "clean", label)

    def compute() -> dict[str, Any]:
        stats = clean_files(
            inputs,
            outputs,
            langs=label.split("-"),
            segments=_segments(cfg, label, read),
            workers=cfg.cleaning.workers,
            num_perm=cfg.cleaning.near_dedup_num_perm,
            articles_in=articles,
            articles_out=articles_out,
        )
        return {**key, "enabled": True, "paths": [str(p) for p in outputs], **stats}

    return run_stage(stage, compute)


def clean_mono(cfg: PipelineConfig, lang: str) -> dict[str, Any]:
    """Clean one language's extracted Wikipedia into `clean/mono/<lang>.all` (+ `.docs`)."""
    return _clean(cfg, lang, None)


def clean_para(cfg: PipelineConfig, pair: str, read: dict[str, Any]) -> dict[str, Any]:
    """Clean one pair's parallel text (`read`: the read-parallel result, for the corpus boundaries)."""
    return _clean(cfg, pair, read)
