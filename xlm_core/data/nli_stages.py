"""XNLI / MultiNLI preparation stages, one function per Prefect task (as `stages.py` for pretraining).

The pretrained model fixes the text processing: its lowercasing, its BPE codes and its dictionary
(`vocab` below: `{"root", "codes", "dictionary", "lowercase": {lang: bool}}`, written by
`xlm_core.train.finetune.model_vocabulary`). Layout under `<workdir>/xnli/`:

    downloads/XNLI-1.0.zip  downloads/multinli_1.0.zip
    text/{lang}.{split}.{s1,s2,label}             raw text (en train from MultiNLI; valid/test from XNLI)
    <vocab id>/tok/...  <vocab id>/bpe/...        tokenized, BPE-applied, per model vocabulary
    <vocab id>/bin/{split}.{s1,s2}.{lang}.*       binarized (XLM's names), {split}.label.{lang} labels

Every output is written atomically; each function returns small serialisable values.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from xlm_core.config import PipelineConfig
from xlm_core.data import nli, tokenize
from xlm_core.data.binarize import binarize, binarized_paths
from xlm_core.data.bpe import apply_bpe
from xlm_core.data.demo_nli import build_demo_nli
from xlm_core.data.dictionary import Dictionary
from xlm_core.data.download import download
from xlm_core.io import atomic_path
from xlm_core.stage_cache import Stage, run_stage

__all__ = [
    "NLIUnit",
    "cache_key",
    "fetch_nli",
    "nli_bin_dir",
    "nli_sources",
    "nli_units",
    "prepare_nli_unit",
    "read_nli",
]

logger = logging.getLogger(__name__)

NLIUnit = dict[str, str]  # {"lang": "fr", "split": "valid"}


def _root(cfg: PipelineConfig) -> Path:
    return cfg.workdir / "xnli"


def nli_bin_dir(vocab: dict[str, Any]) -> Path:
    """Where the binarized sets of one model vocabulary live."""
    return Path(vocab["root"]) / "bin"


_CODE = ("xlm_core.data.nli_stages", "xlm_core.data.nli", "xlm_core.io")


def _sources_stage(cfg: PipelineConfig) -> Stage:
    x = cfg.xnli
    return Stage(
        "xnli-demo-set",
        "all",
        cfg.workdir,
        params={"langs": x.langs, "train_pairs": x.demo_train_pairs, "eval_pairs": x.demo_eval_pairs},
        outputs=[_root(cfg) / "mirror"],
        code=(*_CODE, "xlm_core.data.demo_nli", "xlm_core.data.demo_mirror"),
    )


def nli_sources(cfg: PipelineConfig) -> dict[str, str]:
    """URLs of the XNLI and MultiNLI zips; builds the offline demo set when `xnli.demo` is on."""
    if not cfg.xnli.demo:
        return {"xnli_url": cfg.xnli.xnli_url, "multinli_url": cfg.xnli.multinli_url}
    return run_stage(
        _sources_stage(cfg),
        lambda: build_demo_nli(
            _root(cfg) / "mirror",
            langs=cfg.xnli.langs,
            train_pairs=cfg.xnli.demo_train_pairs,
            eval_pairs=cfg.xnli.demo_eval_pairs,
        ),
    )


def fetch_nli(cfg: PipelineConfig, url: str) -> str:
    """Download one zip into `xnli/downloads/` (resumed, retried; an existing complete file is replaced)."""
    dest = _root(cfg) / "downloads" / url.rstrip("/").rsplit("/", 1)[-1]
    return str(download(url, dest, max_bytes=cfg.data.max_download_bytes))


def read_nli(cfg: PipelineConfig, xnli_zip: str, multinli_zip: str, langs: list[str]) -> dict[str, Any]:
    """XNLI valid/test for `langs` and the English MultiNLI train split, as line files in `xnli/text/`;
    `units` lists what `prepare_nli_unit` then prepares."""
    text = _root(cfg) / "text"

    def compute() -> dict[str, Any]:
        limit = cfg.data.max_member_bytes
        counts = nli.read_xnli(Path(xnli_zip), text, langs=langs, max_member_bytes=limit)
        train = nli.read_multinli(Path(multinli_zip), text, splits=["train"], max_member_bytes=limit)
        return {"xnli": counts, "train": train["train"], "units": nli_units(langs)}

    return run_stage(_read_stage(cfg, xnli_zip, multinli_zip, langs), compute)


def _read_stage(cfg: PipelineConfig, xnli_zip: str, multinli_zip: str, langs: list[str]) -> Stage:
    text = _root(cfg) / "text"
    units = nli_units(langs)
    return Stage(
        "xnli-read",
        "all",
        cfg.workdir,
        params={"langs": langs, "max_member_bytes": cfg.data.max_member_bytes},
        inputs=[Path(xnli_zip), Path(multinli_zip)],
        outputs=[p for u in units for p in nli.nli_files(text, u["lang"], u["split"])],
        code=_CODE,
    )


def nli_units(langs: list[str]) -> list[NLIUnit]:
    """English train, then valid and test of every language."""
    return [{"lang": "en", "split": "train"}] + [
        {"lang": lang, "split": s} for lang in langs for s in ("valid", "test")
    ]


def _lowercase(vocab: dict[str, Any], lang: str) -> bool:
    """The model's lowercasing for `lang` (its per-language setting, else its default)."""
    return vocab["lowercase"].get(lang, vocab["lowercase"].get("*", True))


def _prepare_stage(cfg: PipelineConfig, unit: NLIUnit, vocab: dict[str, Any]) -> Stage:
    lang, split = unit["lang"], unit["split"]
    root = Path(vocab["root"])
    outputs = [nli_bin_dir(vocab) / f"{split}.label.{lang}"]
    for side in ("s1", "s2"):
        outputs += [root / stage / f"{split}.{side}.{lang}" for stage in ("tok", "bpe")]
        outputs += binarized_paths(nli_bin_dir(vocab) / f"{split}.{side}.{lang}").values()
    return Stage(
        "xnli-prepare",
        f"{root.name}-{lang}-{split}",
        cfg.workdir,
        params={"lowercase": _lowercase(vocab, lang)},
        inputs=[*nli.nli_files(_root(cfg) / "text", lang, split), Path(vocab["dictionary"]), Path(vocab["codes"])],
        outputs=outputs,
        code=(*_CODE, "xlm_core.data.tokenize", "xlm_core.data.bpe", "xlm_core.data.binarize"),
        tools=("sacremoses", "jieba", "fugashi", "pythainlp", "fastBPE"),
    )


def prepare_nli_unit(cfg: PipelineConfig, unit: NLIUnit, vocab: dict[str, Any]) -> dict[str, Any]:
    """Tokenize (with the model's lowercasing), apply the model's BPE codes and binarize with its
    dictionary both sides of one language and split; copy the labels next to them."""
    return run_stage(_prepare_stage(cfg, unit, vocab), lambda: _prepare(cfg, unit, vocab))


def cache_key(stage: str, cfg: PipelineConfig, *args: Any) -> str | None:
    """Prefect cache key of an XNLI data task (see `xlm_core.stage_cache.Stage.cache_key`)."""
    if stage == "xnli-demo-set" and not cfg.xnli.demo:
        return None
    builders = {"xnli-demo-set": _sources_stage, "xnli-read": _read_stage, "xnli-prepare": _prepare_stage}
    return builders[stage](cfg, *args).cache_key()


def _prepare(cfg: PipelineConfig, unit: NLIUnit, vocab: dict[str, Any]) -> dict[str, Any]:
    lang, split = unit["lang"], unit["split"]
    root = Path(vocab["root"])
    sources = nli.nli_files(_root(cfg) / "text", lang, split)
    dico = Dictionary.read(vocab["dictionary"])
    lowercase = _lowercase(vocab, lang)
    stats: dict[str, Any] = {"lang": lang, "split": split}
    for side, source in zip(("s1", "s2"), sources[:2], strict=True):
        tok = root / "tok" / f"{split}.{side}.{lang}"
        bpe_path = root / "bpe" / f"{split}.{side}.{lang}"
        tok.parent.mkdir(parents=True, exist_ok=True)
        bpe_path.parent.mkdir(parents=True, exist_ok=True)
        tokenize.tokenize_file(source, tok, lang=lang, lowercase=lowercase, workers=cfg.tokenization.workers)
        apply_bpe(tok, bpe_path, vocab["codes"], workers=cfg.tokenization.workers)
        result = binarize(bpe_path, dico, nli_bin_dir(vocab) / f"{split}.{side}.{lang}")
        stats[f"{side}_sentences"], stats[f"{side}_unk_rate"] = result["sentences"], result["unk_rate"]
    with atomic_path(nli_bin_dir(vocab) / f"{split}.label.{lang}") as tmp:
        shutil.copyfile(sources[2], tmp)
    return stats
