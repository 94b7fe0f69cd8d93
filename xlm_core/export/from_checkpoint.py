"""Export a training checkpoint directory (state.pt, config.json, dict.txt, codes) to Hugging Face.

The checkpoint is self-describing (see `xlm_core.checkpoint`): the model state dict and architecture
in `state.pt`, the resolved experiment config, the XLM dictionary and the fastBPE codes. Everything
the exported config, tokenizer and model card need comes from there.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from xlm_core.checkpoint import STATE_FILE, CheckpointError, error_summary, load_checkpoint
from xlm_core.config import PipelineConfig, config_from_dict
from xlm_core.data.dictionary import Dictionary
from xlm_core.data.dump_dates import recorded_date
from xlm_core.data.source_stages import latest_record
from xlm_core.export.hf import export_lm, verify_export
from xlm_core.model import XLMArchitecture, XLMWithLMHeadModel

__all__ = [
    "card_info_from_config",
    "export_checkpoint",
    "model_from_checkpoint",
    "read_words",
    "verify_checkpoint_export",
]

logger = logging.getLogger(__name__)

_DICT, _CODES = "dict.txt", "codes"


def read_words(path: str | Path) -> list[str]:
    """Dictionary words in id order from a checkpoint's dict.txt (ids 0-13 the implicit specials)."""
    return Dictionary.read(path).words


def model_from_checkpoint(
    checkpoint_dir: str | Path,
) -> tuple[XLMWithLMHeadModel, XLMArchitecture, dict[str, Any], PipelineConfig]:
    """(model in eval mode on CPU, architecture, train_state, config) from a checkpoint directory."""
    directory = Path(checkpoint_dir)
    state, config = load_checkpoint(directory)
    if "num_labels" in state:
        raise CheckpointError(
            f"{directory} is an XNLI classifier checkpoint, not a pretraining one; the xnli flow exports it "
            "(xlm_core.export.classifier), or pass a pretraining checkpoint"
        )
    try:
        cfg = config_from_dict(config, source=str(directory / "config.json"))
    except ValueError as error:
        raise CheckpointError(
            f"{error}; this config.json is not this pipeline's, or from an incompatible version"
        ) from error
    try:
        arch = XLMArchitecture(**state["arch"])
        model = XLMWithLMHeadModel(arch)
        model.load_state_dict(state["model"], strict=True)
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{directory / STATE_FILE}: its weights do not fit its architecture ({error_summary(error, lines=2)}); the "
            "checkpoint is damaged or from an incompatible version: pass another checkpoint"
        ) from error
    return model.eval(), arch, state.get("train_state", {}), cfg


def _dump_dates(cfg: PipelineConfig) -> str:
    """`20240301 (en, fr)`; for `latest`, the dates it resolved to, as recorded by the fetch stage
    (`latest (not yet resolved)` for a language fetched elsewhere)."""
    wiki, langs = cfg.data.wikipedia, cfg.data.mono
    if wiki.dump_date != "latest":
        return f"{wiki.dump_date} ({', '.join(langs)})"
    by_date: dict[str, list[str]] = {}
    for lang in langs:
        date = recorded_date(latest_record(cfg, lang)) or "latest (not yet resolved)"
        by_date.setdefault(date, []).append(lang)
    return "; ".join(f"{date} ({', '.join(names)})" for date, names in by_date.items())


def card_info_from_config(cfg: PipelineConfig, train_state: dict[str, Any]) -> dict[str, Any]:
    """Model-card facts from the experiment config and the final train state."""
    metrics = train_state.get("last_metrics") or {}
    perplexity: dict[str, dict[str, float]] = {}
    accuracy: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        # `valid_en_mlm_ppl`, `test_en-fr_clm_acc`, `valid_en_fr_mlm_ppl` (TLM); skip the averages.
        parts = key.split("_")
        if len(parts) < 4 or parts[0] not in ("valid", "test") or parts[-1] not in ("ppl", "acc"):
            continue
        if parts[-2] == "unigram":  # the baselines (`valid_en_mlm_unigram_ppl`) go to "What the model learned"
            continue
        target = perplexity if parts[-1] == "ppl" else accuracy
        target.setdefault(parts[0], {})[f"{'_'.join(parts[1:-2])} ({parts[-2].upper()})"] = float(value)
    wiki = cfg.data.wikipedia
    sources = [f"Wikipedia dumps {_dump_dates(cfg)} from {wiki.base_url}"]
    sources += [f"OPUS {c.corpus} {c.version} {c.pair}" for c in cfg.data.parallel]
    if cfg.data.demo_mirror:
        sources.append("demo mirror built from local man pages and gettext catalogs (not real Wikipedia/OPUS)")
    seconds = train_state.get("train_seconds")
    objectives = (
        (["CLM"] if cfg.objectives.clm_steps else [])
        + (["MLM"] if any("-" not in s for s in cfg.objectives.mlm_steps) else [])
        + (["TLM"] if any("-" in s for s in cfg.objectives.mlm_steps) else [])
    )
    return {
        "model_name": cfg.experiment.name,
        "objectives": objectives,
        "steps": {"clm_steps": cfg.objectives.clm_steps, "mlm_steps": cfg.objectives.mlm_steps},
        "data_sources": sources,
        "preprocessing": [
            "Moses punctuation normalisation and tokenisation (sacremoses)",
            f"lowercase and accent removal: {cfg.tokenization.lowercase_and_remove_accent}"
            + (
                f" (per language: {cfg.tokenization.per_lang_lowercase})" if cfg.tokenization.per_lang_lowercase else ""
            ),
            f"fastBPE with {cfg.bpe.codes} merge operations learned on {cfg.bpe.sample_size} sampled lines",
        ],
        "bpe": {"codes": cfg.bpe.codes, "max_vocab": cfg.bpe.max_vocab, "min_count": cfg.bpe.min_count},
        "hyperparameters": {
            "optimizer": f"{cfg.optim.name} (lr {cfg.optim.lr}, betas {cfg.optim.beta1}/{cfg.optim.beta2}, "
            f"warmup {cfg.optim.warmup_updates})",
            "batch": f"{cfg.objectives.batch_size} x {cfg.objectives.bptt} tokens (streams), "
            + (
                f"{cfg.objectives.tokens_per_batch} tokens (pairs)"
                if cfg.objectives.tokens_per_batch > 0
                else f"{cfg.objectives.batch_size} pairs"
            ),
            "word_pred / mask-keep-rand": f"{cfg.objectives.word_pred} / {cfg.objectives.word_mask_keep_rand}",
            "precision": cfg.train.precision,
            "updates": train_state.get("update", "not recorded"),
            "epochs": train_state.get("epoch", "not recorded"),
            "workers": cfg.scaling.num_workers,
        },
        "training_time": f"{seconds / 3600:.2f} h" if seconds else None,
        "perplexity": perplexity,
        "accuracy": accuracy,
        "metrics": {k: float(v) for k, v in metrics.items() if k.startswith(("valid_", "test_"))},
        "extra": {"seed": cfg.experiment.seed},
    }


def export_checkpoint(checkpoint_dir: str | Path, out_dir: str | Path) -> Path:
    """Export the LM in `checkpoint_dir` to a transformers directory at `out_dir` (see `export_lm`)."""
    directory = Path(checkpoint_dir)
    model, arch, train_state, cfg = model_from_checkpoint(directory)
    langs = sorted(cfg.data.langs)
    flags = {cfg.tokenization.lowercase_for(lang) for lang in langs}
    if len(flags) > 1:
        # The HF tokenizer has one flag for all languages (and always runs Moses-en): see
        # docs/transformers-compatibility.md, "Pre-tokenization and the `lang` argument".
        logger.warning(
            "per-language lowercasing %s cannot be exported; using the global flag %s",
            cfg.tokenization.per_lang_lowercase,
            cfg.tokenization.lowercase_and_remove_accent,
        )
    return export_lm(
        model,
        arch,
        out_dir,
        words=read_words(directory / _DICT),
        codes_path=directory / _CODES,
        lang2id=cfg.lang2id,
        do_lowercase_and_remove_accent=cfg.tokenization.lowercase_and_remove_accent,
        causal=cfg.causal,
        bos_token=cfg.export.bos_token,
        card=card_info_from_config(cfg, train_state),
    )


def verify_checkpoint_export(
    export_dir: str | Path, checkpoint_dir: str | Path, *, lang: str | None = None, atol: float = 1e-4
) -> float:
    """Load `export_dir` with transformers and compare its logits with the checkpoint's model."""
    model, _, _, _ = model_from_checkpoint(checkpoint_dir)
    return verify_export(export_dir, model, lang=lang, atol=atol)
