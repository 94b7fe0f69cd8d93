"""XNLI accuracy: per-pair correctness sums, metric names, and the 15-language table beside the paper.

Metric names are XLM's: `xnli_{split}_{lang}_acc` (percent), plus `xnli_{split}_avg_acc` over the
evaluated languages (the original logs no average). The table lists the 15 XNLI languages in the
paper's order (Lample & Conneau 2019, Table 1; the seed card of xlm-mlm-tlm-xnli15-1024) with the
paper's MLM+TLM test accuracy for the same evaluation mode next to this run's, and the mode itself;
languages not evaluated show a dash.

Modes (`xnli.mode`): `zero-shot` trains on English MultiNLI and tests each language; `translate-train`
trains on MultiNLI machine-translated into the languages; `translate-test` tests the English model on
each language's test set machine-translated into English. In translate-test `xnli_test_fr_acc` is the
accuracy on the French test set translated into English.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping

import torch

__all__ = [
    "MODE_DESCRIPTIONS",
    "NLI_LABELS",
    "PAPER_TEST_ACCURACY",
    "PAPER_TRANSLATE_TRAIN_ACCURACY",
    "SELECTION_METRIC",
    "TABLE_LANGS",
    "accuracy_metrics",
    "card_results_markdown",
    "correct_and_total",
    "metric_name",
    "paper_accuracy",
    "table_csv",
    "table_markdown",
    "table_rows",
]

# Class ids of XLM's XNLI head (`label2id` in `xlm/evaluation/xnli.py`) and of the export's id2label.
NLI_LABELS = ("contradiction", "neutral", "entailment")
# The paper's column order and its XLM (MLM+TLM) XNLI test accuracies.
PAPER_TEST_ACCURACY = {
    "en": 85.0,
    "fr": 78.7,
    "es": 78.9,
    "de": 77.8,
    "el": 76.6,
    "bg": 77.4,
    "ru": 75.3,
    "tr": 72.5,
    "ar": 73.1,
    "vi": 76.1,
    "th": 73.2,
    "zh": 76.5,
    "hi": 69.6,
    "sw": 68.4,
    "ur": 67.3,
}
# Table 1's MLM+TLM row under "translate-train" (each language's model fine-tuned on MultiNLI translated
# into it). The paper's translate-test row is not carried here: that column shows a dash.
PAPER_TRANSLATE_TRAIN_ACCURACY = {
    "en": 85.0,
    "fr": 80.2,
    "es": 80.8,
    "de": 80.3,
    "el": 78.1,
    "bg": 79.3,
    "ru": 78.1,
    "tr": 74.7,
    "ar": 76.5,
    "vi": 76.6,
    "th": 75.5,
    "zh": 78.6,
    "hi": 72.3,
    "sw": 70.9,
    "ur": 63.2,
}
TABLE_LANGS = tuple(PAPER_TEST_ACCURACY)
MODE_DESCRIPTIONS = {
    "zero-shot": "fine-tuned on English MultiNLI, tested on XNLI in each language",
    "translate-train": "fine-tuned on MultiNLI machine-translated into the languages (XNLI-MT), tested on XNLI",
    "translate-test": "fine-tuned on English MultiNLI, tested on each language's XNLI sets machine-translated "
    "into English (XNLI-MT)",
}
SELECTION_METRIC = "xnli_valid_avg_acc"  # the epoch with the best average valid accuracy is selected
_DASH = "-"


def metric_name(split: str, lang: str) -> str:
    """XLM's metric name: `xnli_valid_en_acc`, `xnli_test_fr_acc`; `lang` "avg" for the average."""
    return f"xnli_{split}_{lang}_acc"


def paper_accuracy(mode: str) -> dict[str, float] | None:
    """The paper's MLM+TLM test accuracies for `mode`, or None where the project does not carry them."""
    return {"zero-shot": PAPER_TEST_ACCURACY, "translate-train": PAPER_TRANSLATE_TRAIN_ACCURACY}.get(mode)


@torch.no_grad()
def correct_and_total(logits_BC: torch.Tensor, labels_B: torch.Tensor) -> tuple[float, float]:
    """Correct predictions and pairs in one batch (additive, so ranks can sum them)."""
    return float((logits_BC.argmax(-1) == labels_B).sum()), float(labels_B.numel())


def accuracy_metrics(sums: Mapping[str, float], langs: Iterable[str]) -> dict[str, float]:
    """`xnli_{split}_{lang}_acc` and `xnli_{split}_avg_acc` from sums `{split}_{lang}/correct` and `/total`."""
    metrics: dict[str, float] = {}
    for split in ("valid", "test"):
        values = []
        for lang in langs:
            total = sums.get(f"{split}_{lang}/total", 0.0)
            if total:
                metrics[metric_name(split, lang)] = 100.0 * sums[f"{split}_{lang}/correct"] / total
                values.append(metrics[metric_name(split, lang)])
        if values:
            metrics[metric_name(split, "avg")] = sum(values) / len(values)
    return metrics


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)


def table_rows(metrics: Mapping[str, float], mode: str = "zero-shot") -> list[dict[str, str | float | None]]:
    """One row per XNLI language (paper order) plus the average: valid, test and the paper's test accuracy
    in the same `mode` (None where not carried), and the mode."""
    paper = paper_accuracy(mode)
    rows: list[dict[str, str | float | None]] = []
    for lang in [*TABLE_LANGS, "avg"]:
        if paper is None:
            reference = None
        else:
            reference = paper[lang] if lang != "avg" else round(sum(paper.values()) / len(paper), 2)
        rows.append(
            {
                "language": lang,
                "valid_acc": _rounded(metrics.get(metric_name("valid", lang))),
                "test_acc": _rounded(metrics.get(metric_name("test", lang))),
                "paper_test_acc": reference,
                "mode": mode,
            }
        )
    return rows


def _cell(value: str | float | None) -> str:
    if value is None:
        return _DASH
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def table_markdown(metrics: Mapping[str, float], mode: str = "zero-shot") -> str:
    """The table as Markdown: a row per language, columns valid, test, the paper's test accuracy and the mode."""
    lines = ["| language | valid acc (%) | test acc (%) | paper test acc (%) | mode |", "|---|---|---|---|---|"]
    for row in table_rows(metrics, mode):
        lines.append("| " + " | ".join(_cell(row[k]) for k in row) + " |")
    return "\n".join(lines) + "\n"


def table_csv(metrics: Mapping[str, float], mode: str = "zero-shot") -> str:
    """The table as CSV (empty cells for languages not evaluated)."""
    buffer = io.StringIO()
    rows = table_rows(metrics, mode)
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def card_results_markdown(metrics: Mapping[str, float], *, epoch: int | None = None, mode: str = "zero-shot") -> str:
    """Results for the model card in the seed card's layout: a `Language` header row, an `Accuracy`
    row (this model's test accuracy), plus the paper's row for the same mode when carried."""
    header = "| Language | " + " | ".join(TABLE_LANGS) + " |"
    rule = "|---|" + "---|" * len(TABLE_LANGS)
    ours = [metrics.get(metric_name("test", lang)) for lang in TABLE_LANGS]
    paper = paper_accuracy(mode)
    label = "Paper (XLM MLM+TLM)" if mode == "zero-shot" else f"Paper (XLM MLM+TLM, {mode})"
    lines = [
        f"Test accuracy (%) on XNLI, {mode}: {MODE_DESCRIPTIONS[mode]}"
        + (f"; at the epoch with the best average validation accuracy (epoch {epoch})" if epoch is not None else "")
        + "; languages not evaluated show a dash.",
        "",
        header,
        rule,
        "| Accuracy | " + " | ".join(_cell(None if v is None else float(v)) for v in ours) + " |",
    ]
    if paper is not None:
        lines.append(f"| {label} | " + " | ".join(f"{paper[lang]:.1f}" for lang in TABLE_LANGS) + " |")
    return "\n".join(lines)
