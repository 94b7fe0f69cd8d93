"""The figures an evaluation's progress line shows (tasks.progress): perplexities, the mean unigram
baseline, the alignment probe's means and XNLI accuracies; not the per-direction or test figures."""

from __future__ import annotations

from tasks.progress import _shown_after_evaluation


def test_progress_line_shows_the_evaluation_figures() -> None:
    shown = {
        "valid_en_mlm_ppl",
        "valid_mlm_ppl",
        "valid_mlm_unigram_ppl",
        "valid_en_fr_retrieval_p1",
        "valid_en_fr_tlm_context_gain",
        "xnli_valid_fr_acc",
    }
    hidden = {
        "valid_en_mlm_unigram_ppl",
        "valid_en_fr_retrieval_p1_en_fr",
        "valid_en_fr_tlm_context_gain_fr_en",
        "valid_en_fr_probe_pairs",
        "valid_en_mlm_acc",
        "test_en_mlm_ppl",
        "train_en_mlm_loss",
    }
    assert {key for key in shown | hidden if _shown_after_evaluation(key)} == shown
