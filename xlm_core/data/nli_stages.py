"""XNLI / MultiNLI preparation stages, one function per Prefect task (as `stages.py` for pretraining).

The pretrained model fixes the text processing: its lowercasing, its BPE codes and its dictionary
(`vocab` below: `{"root", "codes", "dictionary", "lowercase": {lang: bool}}`, written by
`xlm_core.train.finetune.model_vocabulary`). Layout under `<workdir>/xnli/`:

    downloads/XNLI-1.0.zip  downloads/multinli_1.0.zip  downloads/XNLI-MT-1.0.zip
    text/{lang}.{split}.{s1,s2,label}             raw text, by split:
        train                 English MultiNLI train (zero-shot, translate-test)
        valid, test           XNLI dev/test in {lang} (zero-shot, translate-train)
        train_mt              XNLI-MT: MultiNLI machine-translated into {lang} (translate-train)
        valid_mt, test_mt     XNLI-MT: {lang}'s dev/test machine-translated into English (translate-test)
    <vocab id>/tok/...  <vocab id>/bpe/...        tokenized, BPE-applied, per model vocabulary
    <vocab id>/bin/{split}.{s1,s2}.{lang}.*       binarized (XLM's names), {split}.label.{lang} labels

XNLI-MT text is already tokenised: it is only lowercased (as XLM treats XNLI-MT's English train set),
in the language of its text (English for valid_mt/test_mt). Every output is written atomically; each
function returns small serialisable values.
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
from xlm_core.data.demo_nli import nli_files as demo_nli_zips
from xlm_core.data.dictionary import Dictionary
from xlm_core.data.download import download
from xlm_core.data.download_stages import download_stage, fetch_limits, mirror_checks, publish_checksums, recorded
from xlm_core.io import atomic_open, atomic_path
from xlm_core.stage_cache import Stage, run_stage

__all__ = [
    "NLIUnit",
    "cache_key",
    "eval_sets",
    "fetch_cache_key",
    "fetch_nli",
    "nli_bin_dir",
    "nli_sources",
    "nli_units",
    "prepare_nli_unit",
    "read_nli",
    "text_lang",
    "train_sets",
]

logger = logging.getLogger(__name__)

NLIUnit = dict[str, str]  # {"lang": "fr", "split": "valid"}


def _root(cfg: PipelineConfig) -> Path:
    return cfg.workdir / "xnli"


def nli_bin_dir(vocab: dict[str, Any]) -> Path:
    """Where the binarized sets of one model vocabulary live."""
    return Path(vocab["root"]) / "bin"


_CODE = ("xlm_core.data.nli_stages", "xlm_core.data.nli", "xlm_core.io")


# Per mode: the split trained on, and the file splits scored as `valid` and `test`.
_TRAIN_SPLIT = {"zero-shot": "train", "translate-train": "train_mt", "translate-test": "train"}
_EVAL_SPLITS = {
    "zero-shot": {"valid": "valid", "test": "test"},
    "translate-train": {"valid": "valid", "test": "test"},
    "translate-test": {"valid": "valid_mt", "test": "test_mt"},
}
_MT_KINDS = {"train_mt": "train", "valid_mt": "dev", "test_mt": "test"}  # split -> XNLI-MT member kind


def text_lang(split: str, lang: str) -> str:
    """The language of a set's text: English for the translate-test sets, else the set's language."""
    return "en" if split in ("valid_mt", "test_mt") else lang


def _train_langs(cfg: PipelineConfig, langs: list[str]) -> list[str]:
    if cfg.xnli.mode != "translate-train":
        return ["en"]
    missing = [lang for lang in cfg.xnli.train_langs or [] if lang not in langs]
    if missing:
        raise ValueError(f"xnli.train_langs: {missing} are not languages of the model ({langs}); remove them")
    return list(cfg.xnli.train_langs or langs)


def train_sets(cfg: PipelineConfig, langs: list[str]) -> list[tuple[str, str]]:
    """(split, lang) of the training sets of `cfg.xnli.mode`; each is trained with its own language id."""
    return [(_TRAIN_SPLIT[cfg.xnli.mode], lang) for lang in _train_langs(cfg, langs)]


def eval_sets(cfg: PipelineConfig, langs: list[str]) -> dict[tuple[str, str], str]:
    """`{("valid" | "test", lang): split of the files scored under that name}` for `cfg.xnli.mode`."""
    splits = _EVAL_SPLITS[cfg.xnli.mode]
    return {(name, lang): splits[name] for name in ("valid", "test") for lang in langs}


def _sources_stage(cfg: PipelineConfig) -> Stage:
    x = cfg.xnli
    params = {"langs": x.langs, "train_pairs": x.demo_train_pairs, "eval_pairs": x.demo_eval_pairs}
    return Stage(
        "xnli-demo-set",
        "all",
        cfg.workdir,
        params=params | ({"translations": True} if x.mode != "zero-shot" else {}),
        outputs=[_root(cfg) / "mirror"],
        code=(*_CODE, "xlm_core.data.demo_nli", "xlm_core.data.demo_catalogs", "xlm_core.data.demo_sources"),
    )


def nli_sources(cfg: PipelineConfig) -> dict[str, str | None]:
    """URLs of the zips `xnli.mode` reads (`xnli_url`, `multinli_url`, `xnli_mt_url`; None for one it does
    not need); builds the offline demo set when `xnli.demo` is on."""
    x = cfg.xnli
    if not x.demo:
        urls: dict[str, str | None] = {"xnli_url": x.xnli_url, "multinli_url": x.multinli_url}
        urls["xnli_mt_url"] = x.xnli_mt_url
    else:
        urls = run_stage(
            _sources_stage(cfg),
            lambda: _with_checksums(
                build_demo_nli(
                    _root(cfg) / "mirror",
                    langs=x.langs,
                    train_pairs=x.demo_train_pairs,
                    eval_pairs=x.demo_eval_pairs,
                    translations=x.mode != "zero-shot",
                )
            ),
        )
    needed = {
        "xnli_url": x.mode != "translate-test",
        "multinli_url": x.mode != "translate-train",
        "xnli_mt_url": x.mode != "zero-shot",
    }
    return {key: urls.get(key) if wanted else None for key, wanted in needed.items()}


def _with_checksums(built: dict[str, str]) -> dict[str, str]:
    """The demo set's URLs, once its zips have a SHA256SUMS list beside them (what `fetch_nli` checks)."""
    publish_checksums(demo_nli_zips(built))
    return built


def _fetch_stage(cfg: PipelineConfig, url: str) -> Stage:
    dest = _root(cfg) / "downloads" / url.rstrip("/").rsplit("/", 1)[-1]
    return download_stage(cfg, f"nli-{dest.name}", url, dest, demo=cfg.xnli.demo)


def fetch_cache_key(cfg: PipelineConfig, url: str | None) -> str | None:
    """Prefect cache key of `fetch_nli`: its download stage's (None, run it, once the zip was deleted or changed)."""
    return None if url is None else _fetch_stage(cfg, url).cache_key()


def fetch_nli(cfg: PipelineConfig, url: str | None) -> str | None:
    """Download one zip into `xnli/downloads/` (resumed, retried, time-bounded by `data.download`), verified
    by the published size and SHA-256 (`nli.RELEASES`) or, for the demo set, by its SHA256SUMS list;
    None for a zip the mode does not read. Reused while the downloaded zip is there unchanged."""
    if url is None:
        return None
    stage = _fetch_stage(cfg, url)
    dest = Path(stage.outputs[0])

    def fetch() -> str:
        checks = mirror_checks(url, "demo NLI set") if cfg.xnli.demo else nli.release_checks(url)
        return str(download(url, dest, **checks, **fetch_limits(cfg)))

    return recorded(stage, fetch)


def _read_caps(cfg: PipelineConfig) -> dict[str, Any]:
    """The NLI readers' caps from `data.unpack`."""
    unpack = cfg.data.unpack
    return {
        "max_member_bytes": unpack.max_nli_member_bytes,
        "max_ratio": unpack.max_ratio,
        "max_line_bytes": unpack.max_line_bytes,
    }


def read_nli(
    cfg: PipelineConfig,
    xnli_zip: str | None,
    multinli_zip: str | None,
    langs: list[str],
    xnli_mt_zip: str | None = None,
) -> dict[str, Any]:
    """The sets `xnli.mode` trains and evaluates on, as line files in `xnli/text/` (see the layout above);
    `units` lists what `prepare_nli_unit` then prepares."""
    text = _root(cfg) / "text"
    units = nli_units(langs, cfg.xnli.mode, _train_langs(cfg, langs))
    zips = {"xnli": xnli_zip, "multinli": multinli_zip, "xnli-mt": xnli_mt_zip}

    def compute() -> dict[str, Any]:
        dropped: dict[str, int] = {}  # rows left out as longer than data.unpack.max_line_bytes, per member
        caps = {**_read_caps(cfg), "dropped": dropped}
        counts: dict[str, dict[str, int]] = {}
        if any(u["split"] in ("valid", "test") for u in units):
            counts = nli.read_xnli(Path(_zip(zips, "xnli")), text, langs=langs, **caps)
        if any(u["split"] == "train" for u in units):
            train = nli.read_multinli(Path(_zip(zips, "multinli")), text, splits=["train"], **caps)
            counts.setdefault("en", {})["train"] = train["train"]
        for unit in (u for u in units if u["split"] in _MT_KINDS):
            lang, split = unit["lang"], unit["split"]
            counts.setdefault(lang, {})[split] = nli.read_xnli_mt_set(
                Path(_zip(zips, "xnli-mt")), text, kind=_MT_KINDS[split], lang=lang, split=split, **caps
            )
        return {"mode": cfg.xnli.mode, "counts": counts, "units": units, "dropped_long_rows": dropped}

    return run_stage(_read_stage(cfg, xnli_zip, multinli_zip, langs, xnli_mt_zip), compute)


def _zip(zips: dict[str, str | None], name: str) -> str:
    if zips[name] is None:
        raise ValueError(f"xnli.mode needs the {name} zip but none was fetched; pass it to read_nli")
    return str(zips[name])


def _read_stage(
    cfg: PipelineConfig,
    xnli_zip: str | None,
    multinli_zip: str | None,
    langs: list[str],
    xnli_mt_zip: str | None = None,
) -> Stage:
    text = _root(cfg) / "text"
    units = nli_units(langs, cfg.xnli.mode, _train_langs(cfg, langs))
    params: dict[str, Any] = {"langs": langs, **_read_caps(cfg)}
    if cfg.xnli.mode != "zero-shot":
        params |= {"mode": cfg.xnli.mode, "train_langs": _train_langs(cfg, langs)}
    return Stage(
        "xnli-read",
        "all",
        cfg.workdir,
        params=params,
        inputs=[Path(z) for z in (xnli_zip, multinli_zip, xnli_mt_zip) if z is not None],
        outputs=[p for u in units for p in nli.nli_files(text, u["lang"], u["split"])],
        code=_CODE,
    )


def nli_units(langs: list[str], mode: str = "zero-shot", train_langs: list[str] | None = None) -> list[NLIUnit]:
    """The training sets of `mode` (English train; translate-train: `train_mt` of every `train_langs`),
    then the two evaluated sets of every language."""
    if mode == "translate-train":
        train = [{"lang": lang, "split": "train_mt"} for lang in train_langs or langs]
    else:
        train = [{"lang": "en", "split": "train"}]
    splits = _EVAL_SPLITS[mode]
    return train + [{"lang": lang, "split": splits[name]} for lang in langs for name in ("valid", "test")]


def _lowercase(vocab: dict[str, Any], lang: str) -> bool:
    """The model's lowercasing for `lang` (its per-language setting, else its default)."""
    return vocab["lowercase"].get(lang, vocab["lowercase"].get("*", True))


def _prepare_stage(cfg: PipelineConfig, unit: NLIUnit, vocab: dict[str, Any]) -> Stage:
    lang, split = unit["lang"], unit["split"]
    root = Path(vocab["root"])
    params: dict[str, Any] = {"lowercase": _lowercase(vocab, text_lang(split, lang))}
    if split in _MT_KINDS:  # already tokenised text: only lowercased, in its text's language
        params |= {"pretokenized": True, "text_lang": text_lang(split, lang)}
    outputs = [nli_bin_dir(vocab) / f"{split}.label.{lang}"]
    for side in ("s1", "s2"):
        outputs += [root / stage / f"{split}.{side}.{lang}" for stage in ("tok", "bpe")]
        outputs += binarized_paths(nli_bin_dir(vocab) / f"{split}.{side}.{lang}").values()
    return Stage(
        "xnli-prepare",
        f"{root.name}-{lang}-{split}",
        cfg.workdir,
        params=params,
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
    language = text_lang(split, lang)
    lowercase = _lowercase(vocab, language)
    stats: dict[str, Any] = {"lang": lang, "split": split}
    for side, source in zip(("s1", "s2"), sources[:2], strict=True):
        tok = root / "tok" / f"{split}.{side}.{lang}"
        bpe_path = root / "bpe" / f"{split}.{side}.{lang}"
        tok.parent.mkdir(parents=True, exist_ok=True)
        bpe_path.parent.mkdir(parents=True, exist_ok=True)
        if split in _MT_KINDS:
            _lowercase_file(source, tok, lowercase=lowercase)
        else:
            tokenize.tokenize_file(source, tok, lang=language, lowercase=lowercase, workers=cfg.tokenization.workers)
        apply_bpe(tok, bpe_path, vocab["codes"], workers=cfg.tokenization.workers)
        result = binarize(bpe_path, dico, nli_bin_dir(vocab) / f"{split}.{side}.{lang}")
        stats[f"{side}_sentences"], stats[f"{side}_unk_rate"] = result["sentences"], result["unk_rate"]
    with atomic_path(nli_bin_dir(vocab) / f"{split}.label.{lang}") as tmp:
        shutil.copyfile(sources[2], tmp)
    return stats


def _lowercase_file(source: Path, dest: Path, *, lowercase: bool) -> None:
    """Already tokenised text, one line per line: whitespace collapsed, lowercased and accent-stripped if asked."""
    with open(source, encoding="utf-8") as lines, atomic_open(dest) as out:
        for line in lines:
            text = " ".join(line.split())
            out.write((tokenize.lowercase_and_remove_accent(text) if lowercase else text) + "\n")
