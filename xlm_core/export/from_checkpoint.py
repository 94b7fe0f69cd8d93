"""Export a training checkpoint directory (state.pt, config.json, dict.txt, codes) to Hugging Face.

The checkpoint is self-describing (see `xlm_core.checkpoint`): the model state dict and architecture
in `state.pt`, the resolved experiment config, the XLM dictionary and the fastBPE codes. Everything
the exported config, tokenizer and model card need comes from there.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from xlm_core.checkpoint import load_checkpoint
from xlm_core.config import PipelineConfig, config_from_dict
from xlm_core.data.dictionary import Dictionary
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
    cfg = config_from_dict(config, source=str(directory))
    arch = XLMArchitecture(**state["arch"])
    model = XLMWithLMHeadModel(arch)
    model.load_state_dict(state["model"], strict=True)
    return model.eval(), arch, state.get("train_state", {}), cfg


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
        target = perplexity if parts[-1] == "ppl" else accuracy
        target.setdefault(parts[0], {})[f"{'_'.join(parts[1:-2])} ({parts[-2].upper()})"] = float(value)
    wiki = cfg.data.wikipedia
    sources = [f"Wikipedia dumps {wiki.dump_date} ({', '.join(cfg.data.mono)}) from {wiki.base_url}"]
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
            f"{cfg.objectives.tokens_per_batch} tokens (pairs)",
            "word_pred / mask-keep-rand": f"{cfg.objectives.word_pred} / {cfg.objectives.word_mask_keep_rand}",
            "precision": cfg.train.precision,
            "updates": train_state.get("update", "not recorded"),
            "epochs": train_state.get("epoch", "not recorded"),
            "workers": cfg.scaling.num_workers,
        },
        "training_time": f"{seconds / 3600:.2f} h" if seconds else None,
        "perplexity": perplexity,
        "accuracy": accuracy,
        "extra": {"seed": cfg.experiment.seed},
    }


def export_checkpoint(checkpoint_dir: str | Path, out_dir: str | Path) -> Path:
    """Export the LM in `checkpoint_dir` to a transformers directory at `out_dir` (see `export_lm`)."""
    directory = Path(checkpoint_dir)
    model, arch, train_state, cfg = model_from_checkpoint(directory)
    langs = sorted(cfg.data.langs)
    flags = {cfg.tokenization.lowercase_for(lang) for lang in langs}
    if len(flags) > 1:
        # The HF tokenizer has one flag for all languages (and always runs Moses-en, hf-compat.md §1.7).
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
