"""XNLI accuracy: per-pair correctness sums, metric names, and the 15-language table beside the paper.

Metric names: `{split}_{lang}_acc` (percent, as XLM's `xnli_{split}_{lang}_acc` without the prefix),
`{split}_avg_acc` over the evaluated languages. The table lists the 15 XNLI languages in the paper's
order (Lample & Conneau 2019, Table 1; the seed card of xlm-mlm-tlm-xnli15-1024) with the paper's
MLM+TLM test accuracy next to this run's; languages not evaluated show a dash.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping

import torch

__all__ = [
    "NLI_LABELS",
    "PAPER_TEST_ACCURACY",
    "TABLE_LANGS",
    "accuracy_metrics",
    "card_results_markdown",
    "correct_and_total",
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
TABLE_LANGS = tuple(PAPER_TEST_ACCURACY)
_DASH = "-"


@torch.no_grad()
def correct_and_total(logits_BC: torch.Tensor, labels_B: torch.Tensor) -> tuple[float, float]:
    """Correct predictions and pairs in one batch (additive, so ranks can sum them)."""
    return float((logits_BC.argmax(-1) == labels_B).sum()), float(labels_B.numel())


def accuracy_metrics(sums: Mapping[str, float], langs: Iterable[str]) -> dict[str, float]:
    """`{split}_{lang}_acc` and `{split}_avg_acc` from sums `{split}_{lang}/correct` and `/total`."""
    metrics: dict[str, float] = {}
    for split in ("valid", "test"):
        values = []
        for lang in langs:
            total = sums.get(f"{split}_{lang}/total", 0.0)
            if total:
                metrics[f"{split}_{lang}_acc"] = 100.0 * sums[f"{split}_{lang}/correct"] / total
                values.append(metrics[f"{split}_{lang}_acc"])
        if values:
            metrics[f"{split}_avg_acc"] = sum(values) / len(values)
    return metrics


def table_rows(metrics: Mapping[str, float]) -> list[dict[str, str | float | None]]:
    """One row per XNLI language (paper order) plus the average: valid, test, paper test accuracy."""
    rows: list[dict[str, str | float | None]] = []
    for lang in TABLE_LANGS:
        valid, test = metrics.get(f"valid_{lang}_acc"), metrics.get(f"test_{lang}_acc")
        rows.append(
            {
                "language": lang,
                "valid_acc": None if valid is None else round(float(valid), 2),
                "test_acc": None if test is None else round(float(test), 2),
                "paper_test_acc": PAPER_TEST_ACCURACY[lang],
            }
        )
    paper_avg = sum(PAPER_TEST_ACCURACY.values()) / len(PAPER_TEST_ACCURACY)
    valid_avg, test_avg = metrics.get("valid_avg_acc"), metrics.get("test_avg_acc")
    rows.append(
        {
            "language": "avg",
            "valid_acc": None if valid_avg is None else round(float(valid_avg), 2),
            "test_acc": None if test_avg is None else round(float(test_avg), 2),
            "paper_test_acc": round(paper_avg, 2),
        }
    )
    return rows


def _cell(value: str | float | None) -> str:
    if value is None:
        return _DASH
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def table_markdown(metrics: Mapping[str, float]) -> str:
    """The table as Markdown: a row per language, columns valid, test and the paper's test accuracy."""
    lines = ["| language | valid acc (%) | test acc (%) | paper test acc (%) |", "|---|---|---|---|"]
    for row in table_rows(metrics):
        lines.append("| " + " | ".join(_cell(row[k]) for k in row) + " |")
    return "\n".join(lines) + "\n"


def table_csv(metrics: Mapping[str, float]) -> str:
    """The table as CSV (empty cells for languages not evaluated)."""
    buffer = io.StringIO()
    rows = table_rows(metrics)
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def card_results_markdown(metrics: Mapping[str, float], *, epoch: int | None = None) -> str:
    """Results for the model card in the seed card's layout: a `Language` header row, an `Accuracy`
    row (this model's test accuracy), plus the paper's row for comparison."""
    header = "| Language | " + " | ".join(TABLE_LANGS) + " |"
    rule = "|---|" + "---|" * len(TABLE_LANGS)
    ours = [metrics.get(f"test_{lang}_acc") for lang in TABLE_LANGS]
    lines = [
        "Test accuracy (%) on XNLI after fine-tuning on English MultiNLI"
        + (f", at the epoch with the best average validation accuracy (epoch {epoch})" if epoch is not None else "")
        + "; languages not evaluated show a dash.",
        "",
        header,
        rule,
        "| Accuracy | " + " | ".join(_cell(None if v is None else float(v)) for v in ours) + " |",
        "| Paper (XLM MLM+TLM) | " + " | ".join(f"{PAPER_TEST_ACCURACY[lang]:.1f}" for lang in TABLE_LANGS) + " |",
    ]
    return "\n".join(lines)
