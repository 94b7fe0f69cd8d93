"""What a pretraining run's validation/test metrics say, as rows and Markdown for reports and model cards.

Pure functions over the flat metric dict the training loop logs (`valid_en_mlm_ppl`,
`valid_en_mlm_unigram_ppl`, `valid_en_fr_retrieval_p1`, `valid_en_fr_tlm_context_gain`, ...); see
`perplexity`, `unigram` and `alignment` for how each is computed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["is_report_metric", "learned_markdown", "learned_rows"]

_SPLITS = ("valid", "test")
_PROBE_MARKERS = ("_retrieval_p1", "_tlm_context_gain")
# `valid_en_mlm_ppl`, `test_en_fr_mlm_unigram_ppl`, `valid_en-fr_clm_acc`; not the averages (`valid_mlm_ppl`).
_LM_KEY = re.compile(
    r"^(?P<split>valid|test)_(?P<set>[^_]+(?:_[^_]+)?)_(?P<objective>mlm|clm)(?:_unigram)?_(?:ppl|acc)$"
)
_PROBE_KEY = re.compile(r"^(?P<split>valid|test)_(?P<pair>[^_]+_[^_]+)_(?:retrieval_p1|tlm_context_gain)$")


def is_report_metric(key: str) -> bool:
    """True for the valid/test results a report shows: perplexities (model and unigram), accuracies,
    retrieval P@1 and TLM context gains (their per-direction values included)."""
    if not key.startswith(tuple(f"{split}_" for split in _SPLITS)):
        return False
    return key.endswith(("_ppl", "_acc")) or any(marker in key for marker in _PROBE_MARKERS)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        return None
    return float(value)


def learned_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per (split, step) and per (split, pair), with None for what was not logged.

    Language-model rows (a step's `{split}_{set}_{objective}_...` metrics, `set` e.g. `en`, `en_fr`
    or `en-fr`): `{"split", "set", "objective" ("mlm" | "clm"), "ppl", "unigram_ppl", "acc"}`.
    Alignment rows (a pair's probe metrics): `{"split", "set", "objective": "alignment",
    "retrieval_p1", "retrieval_p1_forward", "retrieval_p1_backward", "context_gain",
    "context_gain_forward", "context_gain_backward"}`, forward being first language -> second.
    """
    steps: set[tuple[str, str, str]] = set()
    pairs: set[tuple[str, str]] = set()
    for key in metrics:
        if found := _LM_KEY.match(key):
            steps.add((found["split"], found["set"], found["objective"]))
        elif found := _PROBE_KEY.match(key):
            pairs.add((found["split"], found["pair"]))
    order = {split: i for i, split in enumerate(_SPLITS)}
    rows: list[dict[str, Any]] = []
    for split, name, objective in sorted(steps, key=lambda s: (order[s[0]], s[1], s[2])):
        stem = f"{split}_{name}_{objective}"
        rows.append(
            {
                "split": split,
                "set": name,
                "objective": objective,
                "ppl": _number(metrics.get(f"{stem}_ppl")),
                "unigram_ppl": _number(metrics.get(f"{stem}_unigram_ppl")),
                "acc": _number(metrics.get(f"{stem}_acc")),
            }
        )
    for split, pair in sorted(pairs, key=lambda p: (order[p[0]], p[1])):
        lang1, _, lang2 = pair.partition("_")
        row: dict[str, Any] = {"split": split, "set": pair, "objective": "alignment"}
        for field, metric in (("retrieval_p1", "retrieval_p1"), ("context_gain", "tlm_context_gain")):
            stem = f"{split}_{pair}_{metric}"
            row[field] = _number(metrics.get(stem))
            row[f"{field}_forward"] = _number(metrics.get(f"{stem}_{lang1}_{lang2}"))
            row[f"{field}_backward"] = _number(metrics.get(f"{stem}_{lang2}_{lang1}"))
        rows.append(row)
    return rows


def _fmt(value: float | None, spec: str = ".2f", sign: bool = False) -> str:
    if value is None:
        return "-"
    return format(value, ("+" if sign else "") + spec)


def learned_markdown(metrics: Mapping[str, Any] | None) -> str:
    """Markdown tables: perplexity vs the unigram baseline per language/pair, then retrieval P@1 and
    TLM context gain per pair. Empty when `metrics` holds none of them."""
    rows = learned_rows(metrics or {})
    lm_rows = [r for r in rows if r["objective"] != "alignment"]
    probe_rows = [r for r in rows if r["objective"] == "alignment"]
    out: list[str] = []
    if lm_rows:
        out += [
            "Perplexity of the model against a unigram model of the training data, on the same predicted "
            "tokens (lower is better; a model at its unigram baseline has learned only word frequencies).",
            "",
            "| split | language / pair | objective | perplexity | unigram perplexity | accuracy (%) |",
            "|---|---|---|---|---|---|",
        ]
        for r in lm_rows:
            label = "TLM" if r["objective"] == "mlm" and "_" in r["set"] else r["objective"].upper()
            out.append(
                f"| {r['split']} | {r['set'].replace('_', '-')} | {label} | {_fmt(r['ppl'])} | "
                f"{_fmt(r['unigram_ppl'])} | {_fmt(r['acc'])} |"
            )
    if probe_rows:
        if out:
            out.append("")
        out += [
            "Cross-lingual alignment on held-out parallel sentences: sentence retrieval P@1 (%) by cosine "
            "similarity of mean-pooled hidden states (each sentence encoded alone), and the TLM context gain: "
            "masked-word accuracy with the translation visible minus without it (percentage points).",
            "",
            "| split | pair | retrieval P@1 (mean) | P@1 → | P@1 ← | context gain (mean) | gain → | gain ← |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in probe_rows:
            out.append(
                f"| {r['split']} | {r['set'].replace('_', '-')} | {_fmt(r['retrieval_p1'], '.1f')} | "
                f"{_fmt(r['retrieval_p1_forward'], '.1f')} | {_fmt(r['retrieval_p1_backward'], '.1f')} | "
                f"{_fmt(r['context_gain'], '.1f', True)} | {_fmt(r['context_gain_forward'], '.1f', True)} | "
                f"{_fmt(r['context_gain_backward'], '.1f', True)} |"
            )
        out += ["", "→ is first language to second (queries / context in the first), ← the reverse."]
    return "\n".join(out)
