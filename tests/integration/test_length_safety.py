"""Untidy valid/test data through the real data stages and the training loop: 2,000-token pairs,
empty and blank sides, an empty and a 2,000-word monolingual line. Training completes (it crashed at
the first validation before: position 2,001 of 512), and the removed pairs are counted in the
pair-filter stats and in the metrics the loop logs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.conftest import REPO
from xlm_core.config import load_config
from xlm_core.config.limits import pair_max_len
from xlm_core.data import stages
from xlm_core.data.binarize import load_binarized
from xlm_core.data.length_filter import filter_pairs
from xlm_core.paths import WorkLayout
from xlm_core.train.loop import TrainHooks, train

LONG_EN = "the file could not be opened because it is locked . " * 200  # 2,200 words
LONG_FR = "le fichier n' a pas pu être ouvert car il est verrouillé . " * 200
# (en, fr) lines put first in valid and test: 2 pairs too long, 3 with an empty or blank side.
INJECTED = [
    (LONG_EN, LONG_FR),
    (LONG_EN, "fichier verrouillé"),
    ("", "un fichier"),
    ("a file", "   "),
    ("", ""),
]
N_LONG, N_EMPTY = 2, 3


class MetricRecorder:
    """A MetricLogger keeping what the loop logs."""

    def __init__(self) -> None:
        self.logged: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], *, step: int) -> None:
        self.logged.append((step, dict(metrics)))

    def log_artifacts(self, local_dir: Path, artifact_path: str) -> None:
        pass

    def close(self) -> None:
        pass


def _prepend(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines) + path.read_text(encoding="utf-8"), encoding="utf-8")


@pytest.fixture(scope="module")
def untidy(tmp_path_factory: pytest.TempPathFactory):
    cfg = load_config(
        REPO / "configs" / "tiny.yaml",
        {
            "experiment.workdir": str(tmp_path_factory.mktemp("untidy") / "{name}"),
            "data.demo_max_pages": 30,
            "data.demo_max_pairs": 1500,
            "train.eval_max_batches": None,  # evaluate the whole valid/test sets, injected lines included
            "train.steps_per_epoch": 4,
            "train.max_epochs": 1,
        },
    )
    stages.run_sources(cfg)
    layout = WorkLayout(cfg.workdir)
    for split in ("valid", "test"):
        _prepend(layout.para("split", "en-fr", "en", split), [en for en, _ in INJECTED])
        _prepend(layout.para("split", "en-fr", "fr", split), [fr for _, fr in INJECTED])
        for lang, long_line in (("en", LONG_EN), ("fr", LONG_FR)):
            _prepend(layout.mono("split", lang, split), ["", long_line, "   "])
    return cfg, stages.run_text_stages(cfg)


def test_data_stages_count_the_removed_pairs_per_split(untidy) -> None:
    cfg, prepared = untidy
    layout = WorkLayout(cfg.workdir)
    filtered = {record["split"]: record for record in prepared["filtered"]}
    assert sorted(filtered) == ["test", "train", "valid"]
    for split in ("valid", "test"):
        sides = [load_binarized(layout.binarized(split, lang, "en-fr")) for lang in ("en", "fr")]
        assert sides[0].lengths[0] >= 2000 and sides[0].lengths[2] == 0 and sides[1].lengths[3] == 0
        # The file's own pairs (after the injected ones), counted on their own with the split's limit:
        # valid/test keep every pair the positions hold (`objectives.eval_max_len` unset), not `max_len`.
        limit = pair_max_len(cfg.model, cfg.objectives, split)
        assert limit == cfg.model.max_position_embeddings - 2
        _, base = filter_pairs(sides[0].lengths[len(INJECTED) :], sides[1].lengths[len(INJECTED) :], limit)
        record = filtered[split]
        assert record["max_len"] == limit
        assert record["pairs"] == base.pairs + len(INJECTED)
        assert record["removed_long"] == base.removed_long + N_LONG
        assert record["removed_empty"] == base.removed_empty + N_EMPTY
        assert record["kept"] == base.kept and record["longest_side"] >= 2000
        assert record["longest_kept_side"] <= limit
        assert (layout.root / "bin" / f"{split}.en-fr.pairs.json").is_file()
    binarized = {Path(item["prefix"]).name: item for item in prepared["binarized"]}
    assert binarized["valid.en-fr.en"]["empty_sentences"] >= 2 and binarized["valid.en-fr.fr"]["empty_sentences"] >= 2
    assert binarized["valid.en"]["longest_sentence"] >= 2000 and binarized["test.en"]["empty_sentences"] >= 2


def test_training_and_evaluation_complete_and_log_the_counts(untidy, tmp_path: Path) -> None:
    cfg, prepared = untidy
    recorder = MetricRecorder()
    result = train(cfg, TrainHooks(metric_logger=recorder))
    metrics = result["metrics"]
    for key in ("valid_en_fr_mlm_ppl", "test_en_fr_mlm_ppl", "valid_en_mlm_ppl", "test_fr_mlm_ppl"):
        assert math.isfinite(metrics[key]) and metrics[key] < 1e9, key  # 1e9: nothing was evaluated
    step, data = recorder.logged[0]
    assert step == 0
    for record in prepared["filtered"]:
        stem = f"data_{record['split']}_en_fr"
        for key in ("pairs", "removed_empty", "removed_long", "kept"):
            assert data[f"{stem}_{key}"] == record[key], (stem, key)
    # Beside every evaluation: the unigram baselines of the same sets and the alignment probe of en-fr.
    from xlm_core.data.dictionary import Dictionary
    from xlm_core.evaluation.unigram import unigram_baselines
    from xlm_core.objectives.inputs import parse_steps
    from xlm_core.train.evaluate import load_eval_sets

    layout = WorkLayout(cfg.workdir)
    eval_sets = load_eval_sets(cfg, layout, parse_steps(cfg.objectives.clm_steps, cfg.objectives.mlm_steps))
    expected = unigram_baselines(
        cfg.workdir,
        eval_sets,
        lang2id=cfg.lang2id,
        vocab_size=len(Dictionary.read(layout.dictionary)),
        batch_size=cfg.objectives.batch_size,
        word_pred=cfg.objectives.word_pred,
    )
    assert {"valid_en_mlm_unigram_ppl", "test_en_fr_mlm_unigram_ppl", "valid_mlm_unigram_ppl"} <= set(expected)
    assert {key: metrics[key] for key in expected} == expected
    evaluation = next(logged for _, logged in recorder.logged if "valid_en_mlm_ppl" in logged)
    assert evaluation["valid_en_mlm_unigram_ppl"] == expected["valid_en_mlm_unigram_ppl"]
    for split in ("valid", "test"):
        assert evaluation[f"{split}_en_fr_probe_pairs"] > 0
        assert 0.0 <= evaluation[f"{split}_en_fr_retrieval_p1"] <= 100.0
        assert -100.0 <= evaluation[f"{split}_en_fr_tlm_context_gain"] <= 100.0
