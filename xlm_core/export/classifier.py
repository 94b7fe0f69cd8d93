"""Export a fine-tuning checkpoint (XNLI) as a transformers `XLMForSequenceClassification` directory.

The checkpoint (written by `xlm_core.train.finetune`) holds the classifier's state dict and
architecture, its language ids and lowercasing, the resolved config, the model's dictionary and
BPE codes. The model card's results section is given by the caller (the XNLI table).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xlm_core.checkpoint import load_checkpoint
from xlm_core.config import PipelineConfig, config_from_dict
from xlm_core.evaluation.xnli import MODE_DESCRIPTIONS
from xlm_core.export.from_checkpoint import read_words
from xlm_core.export.hf import XNLI_LABELS, export_classifier
from xlm_core.model import XLMArchitecture, XLMForSequenceClassification

__all__ = ["classifier_from_checkpoint", "export_classifier_checkpoint"]


def classifier_from_checkpoint(
    checkpoint_dir: str | Path,
) -> tuple[XLMForSequenceClassification, XLMArchitecture, dict[str, Any], PipelineConfig]:
    """(classifier in eval mode on CPU, architecture, saved state without weights, config)."""
    directory = Path(checkpoint_dir)
    state, config = load_checkpoint(directory)
    arch = XLMArchitecture(**state["arch"])
    model = XLMForSequenceClassification(
        arch, num_labels=state["num_labels"], summary_first_dropout=state["summary_first_dropout"]
    )
    model.load_state_dict(state.pop("model"), strict=True)
    state.pop("optimizer", None)
    train_state = state.pop("train_state")
    return model.eval(), arch, train_state | {"meta": state}, config_from_dict(config, source=str(directory))


def export_classifier_checkpoint(checkpoint_dir: str | Path, out_dir: str | Path, *, results_markdown: str) -> Path:
    """Write the classifier in `checkpoint_dir` to `out_dir` (labels contradiction 0, neutral 1, entailment 2)."""
    directory = Path(checkpoint_dir)
    model, arch, train_state, cfg = classifier_from_checkpoint(directory)
    meta = train_state["meta"]
    lowercase = meta["do_lowercase_and_remove_accent"]
    xnli = cfg.xnli
    seconds = train_state.get("train_seconds")
    workers = cfg.scaling.num_workers  # the fine-tuning's own count (xnli.num_workers) when it was launched
    card = {
        "model_name": f"{cfg.experiment.name}-xnli",
        "description": f"This checkpoint is {MODE_DESCRIPTIONS[xnli.mode]} (XNLI: Conneau et al., 2018; "
        f"evaluation mode `{xnli.mode}`)" + (" (here the offline demo set, not XNLI)." if xnli.demo else "."),
        "data_sources": _data_sources(xnli.mode, xnli.train_langs)
        if not xnli.demo
        else ["offline demo NLI set in the XNLI/MultiNLI/XNLI-MT formats (gettext text, rule labels; not XNLI)"],
        "hyperparameters": {
            "XNLI mode": xnli.mode,
            "fine-tuned layers": xnli.finetune_layers,
            "learning rates (encoder / classifier)": f"{xnli.lr_encoder} / {xnli.lr_classifier} (Adam)",
            "batch size": f"{xnli.batch_size} ({xnli.batch_size // workers} per worker x {workers} workers)",
            "max length": xnli.max_len,
            "epoch size": xnli.epoch_size,
            "classifier dropout": xnli.dropout,
            "selected epoch": train_state.get("best_epoch"),
            "epochs run": train_state.get("epoch"),
        },
        "training_time": f"{seconds / 3600:.2f} h" if seconds else None,
        "results_markdown": results_markdown,
        "extra": {"labels": "contradiction 0, neutral 1, entailment 2", "seed": xnli.seed or cfg.experiment.seed},
    }
    return export_classifier(
        model,
        arch,
        out_dir,
        words=read_words(directory / "dict.txt"),
        codes_path=directory / "codes",
        lang2id=meta["lang2id"],
        do_lowercase_and_remove_accent=True if lowercase is None else bool(lowercase),
        labels=XNLI_LABELS,
        bos_token=cfg.export.bos_token,
        card=card,
    )


def _data_sources(mode: str, train_langs: list[str] | None) -> list[str]:
    """What the classifier was trained and evaluated on, per XNLI mode."""
    if mode == "translate-train":
        langs = ", ".join(train_langs) if train_langs else "every evaluated language"
        return [f"XNLI-MT 1.0 MultiNLI train machine-translated into {langs}", "XNLI 1.0 dev/test (evaluation)"]
    if mode == "translate-test":
        return ["MultiNLI 1.0 train (English)", "XNLI-MT 1.0 dev/test machine-translated into English (evaluation)"]
    return ["MultiNLI 1.0 train (English)", "XNLI 1.0 dev/test (evaluation)"]
