"""What a pretraining run's validation/test metrics say, as rows and Markdown for reports and model cards.

Pure functions over the flat metric dict the training loop logs (`valid_en_mlm_ppl`,
`valid_en_mlm_unigram_ppl`, `valid_en_fr_retrieval_p1`, `valid_en_fr_tlm_context_gain`, ...); see
`perplexity`, `unigram` and `alignment` for how each is computed.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["evidence", "evidence_lines", "is_report_metric", "learned_markdown", "learned_rows"]

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


_OPS = {"<=": operator.le, ">=": operator.ge, ">": operator.gt}
# What a run must show to have learned more than word frequencies (`evidence`): the check, its target.
_CHECKS = (
    ("ppl_to_unigram", "valid MLM perplexity / unigram perplexity", "<=", 0.8),
    ("tlm_context_gain", "TLM context gain (points)", ">=", 1.0),
    ("retrieval_p1_to_chance", "retrieval P@1 / chance", ">=", 5.0),
    ("xnli_en_to_chance", "XNLI English accuracy / chance", ">=", 1.2),
    ("xnli_zero_shot_to_chance", "XNLI zero-shot accuracy / chance (mean of the other languages)", ">", 1.0),
)


def evidence(
    metrics: Mapping[str, Any],
    xnli_metrics: Mapping[str, Any] | None = None,
    *,
    split: str = "valid",
    n_classes: int = 3,
) -> dict[str, Any]:
    """The figures that say whether a run learned beyond word frequencies, on held-out `split` data:

    - `{split}_mlm_ppl`, `{split}_mlm_unigram_ppl` and their ratio `ppl_to_unigram` (the averages over the
      MLM steps, TLM included);
    - per parallel pair `{split}_<l1>_<l2>_retrieval_p1` and `..._tlm_context_gain`, and the means over
      pairs `retrieval_p1`, `tlm_context_gain`; `retrieval_p1_to_chance` divides P@1 by chance,
      100 / the probed pairs (`{split}_<pair>_probe_pairs`);
    - XNLI: `xnli_{split}_<lang>_acc` for every language, `xnli_en_to_chance` and
      `xnli_zero_shot_to_chance` (the mean of the other languages' accuracies / chance, 100 / n_classes).

    `checks` lists, for each figure present, its target and whether it holds (`_CHECKS`). Missing figures
    are left out (a monolingual run has no retrieval, a run without XNLI no accuracies).
    """
    out: dict[str, Any] = {}
    ppl, unigram = (_number(metrics.get(f"{split}_mlm{kind}_ppl")) for kind in ("", "_unigram"))
    if ppl is not None:
        out[f"{split}_mlm_ppl"] = ppl
    if unigram is not None:
        out[f"{split}_mlm_unigram_ppl"] = unigram
    if ppl is not None and unigram:
        out["ppl_to_unigram"] = ppl / unigram
    probes = [r for r in learned_rows(metrics) if r["objective"] == "alignment" and r["split"] == split]
    chances = []
    for row in probes:
        stem = f"{split}_{row['set']}"
        for field, metric in (("retrieval_p1", "retrieval_p1"), ("context_gain", "tlm_context_gain")):
            if row[field] is not None:
                out[f"{stem}_{metric}"] = row[field]
        pairs = _number(metrics.get(f"{stem}_probe_pairs"))
        if pairs:
            chances.append(100.0 / pairs)
    for name, field in (("retrieval_p1", "retrieval_p1"), ("tlm_context_gain", "context_gain")):
        values = [row[field] for row in probes if row[field] is not None]
        if values:
            out[name] = sum(values) / len(values)
    if "retrieval_p1" in out and chances:
        out["retrieval_p1_to_chance"] = out["retrieval_p1"] / (sum(chances) / len(chances))
    chance = 100.0 / n_classes
    accuracies = {
        key.removeprefix(f"xnli_{split}_").removesuffix("_acc"): value
        for key, raw in (xnli_metrics or {}).items()
        if key.startswith(f"xnli_{split}_") and key.endswith("_acc") and (value := _number(raw)) is not None
    }
    accuracies.pop("avg", None)
    for lang, value in sorted(accuracies.items()):
        out[f"xnli_{split}_{lang}_acc"] = value
    if "en" in accuracies:
        out["xnli_en_to_chance"] = accuracies["en"] / chance
    others = [value for lang, value in accuracies.items() if lang != "en"]
    if others:
        out["xnli_zero_shot_to_chance"] = sum(others) / len(others) / chance
    out["checks"] = [
        {
            "figure": key,
            "what": what,
            "target": f"{op} {target:g}",
            "value": out[key],
            "holds": _OPS[op](out[key], target),
        }
        for key, what, op, target in _CHECKS
        if key in out
    ]
    return out


def evidence_lines(found: Mapping[str, Any]) -> list[str]:
    """`evidence`'s checks as terminal lines: `what: value (target ..., holds|NOT met)`."""
    return [
        f"{c['what']}: {c['value']:.3g} (target {c['target']}: {'holds' if c['holds'] else 'NOT met'})"
        for c in found.get("checks", [])
    ]
