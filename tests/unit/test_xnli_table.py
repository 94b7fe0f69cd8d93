"""The XNLI table: all 15 languages in the paper's order beside its numbers; metric names; card layout."""

from __future__ import annotations

from xlm_core.evaluation.xnli import (
    PAPER_TEST_ACCURACY,
    accuracy_metrics,
    card_results_markdown,
    table_csv,
    table_markdown,
    table_rows,
)

LANGS = ["ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh"]


def test_accuracy_metrics_names_and_averages():
    sums = {"valid_en/correct": 3, "valid_en/total": 4, "valid_fr/correct": 1, "valid_fr/total": 4}
    sums |= {"test_en/correct": 2, "test_en/total": 2, "test_fr/correct": 0, "test_fr/total": 0}
    metrics = accuracy_metrics(sums, ["en", "fr"])
    assert metrics == {"valid_en_acc": 75.0, "valid_fr_acc": 25.0, "valid_avg_acc": 50.0, "test_en_acc": 100.0,
                       "test_avg_acc": 100.0}  # fmt: skip


def test_table_has_all_15_languages_in_paper_order_with_the_paper_numbers():
    rows = table_rows({"valid_en_acc": 80.0, "test_en_acc": 79.5, "valid_avg_acc": 80.0, "test_avg_acc": 79.5})
    assert [r["language"] for r in rows[:15]] == list(PAPER_TEST_ACCURACY) and sorted(PAPER_TEST_ACCURACY) == LANGS
    assert rows[0] == {"language": "en", "valid_acc": 80.0, "test_acc": 79.5, "paper_test_acc": 85.0}
    assert rows[14] == {"language": "ur", "valid_acc": None, "test_acc": None, "paper_test_acc": 67.3}
    assert rows[-1]["language"] == "avg"
    markdown = table_markdown({"test_fr_acc": 70.0})
    assert "| fr | - | 70.0 | 78.7 |" in markdown and len(markdown.splitlines()) == 2 + 16
    csv_lines = table_csv({}).splitlines()
    assert csv_lines[0] == "language,valid_acc,test_acc,paper_test_acc" and csv_lines[1] == "en,,,85.0"


def test_card_results_follow_the_seed_card_layout():
    text = card_results_markdown({f"test_{lang}_acc": 50.0 for lang in LANGS}, epoch=3)
    lines = text.splitlines()
    assert lines[2] == "| Language | en | fr | es | de | el | bg | ru | tr | ar | vi | th | zh | hi | sw | ur |"
    assert lines[4] == "| Accuracy |" + " 50.0 |" * 15
    assert lines[5].startswith("| Paper (XLM MLM+TLM) | 85.0 | 78.7 | 78.9 | 77.8 |") and lines[5].endswith("67.3 |")
    assert "epoch 3" in lines[0]
