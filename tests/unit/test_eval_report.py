"""Report pieces for what a run learned (xlm_core.evaluation.report) and their place in the model card."""

from __future__ import annotations

from pathlib import Path

from tests.support.tiny import tiny_arch
from xlm_core.config import load_config
from xlm_core.evaluation.report import is_report_metric, learned_markdown, learned_rows
from xlm_core.export import render_model_card
from xlm_core.export.from_checkpoint import card_info_from_config

REPO = Path(__file__).resolve().parents[2]
METRICS = {
    "valid_en_mlm_ppl": 31.5,
    "valid_en_mlm_unigram_ppl": 210.0,
    "valid_en_mlm_acc": 22.0,
    "valid_fr_mlm_ppl": 40.0,
    "valid_mlm_ppl": 35.75,  # averages are not rows
    "valid_mlm_unigram_ppl": 200.0,
    "valid_en_fr_mlm_ppl": 12.0,
    "valid_en_fr_mlm_unigram_ppl": 190.0,
    "valid_en_fr_retrieval_p1": 42.5,
    "valid_en_fr_retrieval_p1_en_fr": 40.0,
    "valid_en_fr_retrieval_p1_fr_en": 45.0,
    "valid_en_fr_tlm_context_gain": 6.25,
    "valid_en_fr_tlm_context_gain_en_fr": 7.5,
    "valid_en_fr_tlm_context_gain_fr_en": 5.0,
    "valid_en_fr_tlm_acc_context_en_fr": 30.0,
    "valid_en_fr_probe_pairs": 100.0,
    "test_en_mlm_ppl": 33.0,
    "best_valid_mlm_ppl": 35.0,
    "train_en_mlm_loss": 3.0,
}


def test_report_filter() -> None:
    shown = {key for key in METRICS if is_report_metric(key)}
    assert {"valid_en_mlm_unigram_ppl", "valid_en_fr_retrieval_p1", "valid_en_fr_retrieval_p1_fr_en"} <= shown
    assert {"valid_en_fr_tlm_context_gain", "valid_en_fr_tlm_context_gain_en_fr", "valid_en_mlm_acc"} <= shown
    assert not shown & {"valid_en_fr_probe_pairs", "best_valid_mlm_ppl", "train_en_mlm_loss"}


def test_rows_per_language_and_pair() -> None:
    rows = {(r["split"], r["set"], r["objective"]): r for r in learned_rows(METRICS)}
    assert set(rows) == {
        ("valid", "en", "mlm"),
        ("valid", "fr", "mlm"),
        ("valid", "en_fr", "mlm"),
        ("valid", "en_fr", "alignment"),
        ("test", "en", "mlm"),
    }
    assert rows["valid", "en", "mlm"] == {
        "split": "valid", "set": "en", "objective": "mlm", "ppl": 31.5, "unigram_ppl": 210.0, "acc": 22.0,
    }  # fmt: skip
    assert rows["valid", "fr", "mlm"]["unigram_ppl"] is None
    probe = rows["valid", "en_fr", "alignment"]
    assert (probe["retrieval_p1"], probe["retrieval_p1_forward"], probe["retrieval_p1_backward"]) == (42.5, 40.0, 45.0)
    assert (probe["context_gain"], probe["context_gain_forward"], probe["context_gain_backward"]) == (6.25, 7.5, 5.0)


def test_markdown_and_model_card() -> None:
    markdown = learned_markdown(METRICS)
    assert "| valid | en | MLM | 31.50 | 210.00 | 22.00 |" in markdown
    assert "| valid | en-fr | TLM | 12.00 | 190.00 | - |" in markdown
    assert "| valid | en-fr | 42.5 | 40.0 | 45.0 | +6.2 | +7.5 | +5.0 |" in markdown
    assert learned_markdown({}) == "" and learned_markdown(None) == ""
    only_ppl = learned_markdown({"valid_en_clm_ppl": 5.0})
    assert "| valid | en | CLM | 5.00 | - | - |" in only_ppl and "retrieval" not in only_ppl

    info = {"languages": ["en", "fr"], "architecture": tiny_arch(40).to_dict(), "metrics": METRICS}
    card = render_model_card(info)
    section = card.split("## What the model learned")[1].split("# Technical Specifications")[0]
    assert markdown in section
    assert "## What the model learned" not in render_model_card(info | {"metrics": {}})


def test_card_info_keeps_the_baselines_out_of_the_perplexity_table() -> None:
    cfg = load_config(REPO / "configs" / "tiny.yaml")
    info = card_info_from_config(cfg, {"last_metrics": METRICS})
    assert info["perplexity"]["valid"] == {"en (MLM)": 31.5, "fr (MLM)": 40.0, "en_fr (MLM)": 12.0}
    assert info["metrics"]["valid_en_fr_tlm_context_gain"] == 6.25
    assert "best_valid_mlm_ppl" not in info["metrics"] and "train_en_mlm_loss" not in info["metrics"]


def test_evidence_holds_the_figures_and_their_targets() -> None:
    from xlm_core.evaluation.report import evidence, evidence_lines

    xnli = {"xnli_valid_en_acc": 60.0, "xnli_valid_fr_acc": 30.0, "xnli_valid_avg_acc": 45.0, "xnli_test_en_acc": 1.0}
    found = evidence(METRICS, xnli)
    assert found["ppl_to_unigram"] == 35.75 / 200.0
    assert found["valid_en_fr_retrieval_p1"] == 42.5 and found["valid_en_fr_tlm_context_gain"] == 6.25
    assert found["retrieval_p1_to_chance"] == 42.5 / (100.0 / 100.0)  # 100 probed pairs: chance is 1%
    assert found["xnli_valid_en_acc"] == 60.0 and "xnli_valid_avg_acc" not in found and "xnli_test_en_acc" not in found
    assert found["xnli_en_to_chance"] == 60.0 / (100 / 3) and found["xnli_zero_shot_to_chance"] == 30.0 / (100 / 3)
    holds = {c["figure"]: c["holds"] for c in found["checks"]}
    assert holds == {
        "ppl_to_unigram": True,
        "tlm_context_gain": True,
        "retrieval_p1_to_chance": True,
        "xnli_en_to_chance": True,
        "xnli_zero_shot_to_chance": False,  # 30% is below chance
    }
    assert any("NOT met" in line and "zero-shot" in line for line in evidence_lines(found))
    # A monolingual run without XNLI: only the perplexity check.
    mono = evidence({"valid_mlm_ppl": 500.0, "valid_mlm_unigram_ppl": 400.0})
    assert [c["figure"] for c in mono["checks"]] == ["ppl_to_unigram"] and not mono["checks"][0]["holds"]


def test_card_names_the_dump_dates_latest_resolved_to(tmp_path) -> None:
    import json

    from xlm_core.data.dump_dates import latest_record_path

    cfg = load_config(
        REPO / "configs" / "tiny.yaml",
        {"experiment.workdir": str(tmp_path), "data.wikipedia.dump_date": "latest", "data.demo_mirror": False},
    )
    record = latest_record_path(tmp_path / "downloads" / "wikipedia", "en")
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"date": "20261101"}), encoding="utf-8")
    [wiki] = [s for s in card_info_from_config(cfg, {})["data_sources"] if s.startswith("Wikipedia")]
    assert wiki.startswith("Wikipedia dumps 20261101 (en); latest (not yet resolved) (fr) from ")
    pinned = load_config(REPO / "configs" / "tiny.yaml", {"data.wikipedia.dump_date": "20240101"})
    assert card_info_from_config(pinned, {})["data_sources"][0].startswith("Wikipedia dumps 20240101 (en, fr) from ")
