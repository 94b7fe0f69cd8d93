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
    assert metrics == {"xnli_valid_en_acc": 75.0, "xnli_valid_fr_acc": 25.0, "xnli_valid_avg_acc": 50.0,
                       "xnli_test_en_acc": 100.0, "xnli_test_avg_acc": 100.0}  # fmt: skip


def test_table_has_all_15_languages_in_paper_order_with_the_paper_numbers():
    metrics = {"xnli_valid_en_acc": 80.0, "xnli_test_en_acc": 79.5, "xnli_valid_avg_acc": 80.0}
    rows = table_rows(metrics | {"xnli_test_avg_acc": 79.5})
    assert [r["language"] for r in rows[:15]] == list(PAPER_TEST_ACCURACY) and sorted(PAPER_TEST_ACCURACY) == LANGS
    assert rows[0] == {
        "language": "en",
        "valid_acc": 80.0,
        "test_acc": 79.5,
        "paper_test_acc": 85.0,
        "mode": "zero-shot",
    }
    assert rows[14] == {"language": "ur", "valid_acc": None, "test_acc": None, "paper_test_acc": 67.3,
                        "mode": "zero-shot"}  # fmt: skip
    assert rows[-1]["language"] == "avg" and rows[-1]["paper_test_acc"] == 75.09  # Table 1 rounds it to 75.1
    markdown = table_markdown({"xnli_test_fr_acc": 70.0})
    assert "| fr | - | 70.0 | 78.7 | zero-shot |" in markdown and len(markdown.splitlines()) == 2 + 16
    csv_lines = table_csv({}).splitlines()
    assert csv_lines[0] == "language,valid_acc,test_acc,paper_test_acc,mode" and csv_lines[1] == "en,,,85.0,zero-shot"


def test_the_table_and_card_name_the_mode_and_its_paper_numbers():
    train = table_rows({"xnli_test_fr_acc": 70.0}, "translate-train")
    assert train[1] == {"language": "fr", "valid_acc": None, "test_acc": 70.0, "paper_test_acc": 80.2,
                        "mode": "translate-train"}  # fmt: skip
    assert train[-1]["paper_test_acc"] == 76.67  # Table 1: 76.7
    assert all(
        row["paper_test_acc"] is None and row["mode"] == "translate-test" for row in table_rows({}, "translate-test")
    )
    card = card_results_markdown({"xnli_test_fr_acc": 70.0}, mode="translate-test").splitlines()
    assert card[0].startswith("Test accuracy (%) on XNLI, translate-test: fine-tuned on English MultiNLI, tested on")
    assert len(card) == 5 and not any(line.startswith("| Paper") for line in card)
    card = card_results_markdown({}, mode="translate-train").splitlines()
    assert card[5].startswith("| Paper (XLM MLM+TLM, translate-train) | 85.0 | 80.2 |")


def test_card_results_follow_the_seed_card_layout():
    text = card_results_markdown({f"xnli_test_{lang}_acc": 50.0 for lang in LANGS}, epoch=3)
    lines = text.splitlines()
    assert lines[2] == "| Language | en | fr | es | de | el | bg | ru | tr | ar | vi | th | zh | hi | sw | ur |"
    assert lines[4] == "| Accuracy |" + " 50.0 |" * 15
    assert lines[5].startswith("| Paper (XLM MLM+TLM) | 85.0 | 78.7 | 78.9 | 77.8 |") and lines[5].endswith("67.3 |")
    assert "epoch 3" in lines[0]
