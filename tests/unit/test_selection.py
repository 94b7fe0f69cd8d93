"""Best-metric tracking and the `metric,patience` stopping criterion (the original's semantics:
stop once the evaluations without improvement exceed the patience)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xlm_core.config import load_config
from xlm_core.train.selection import new_train_state, stop_record, stop_tags, stopping_metrics, update_selection

REPO = Path(__file__).resolve().parents[2]


def _cfg(**overrides):
    return load_config(REPO / "configs" / "tiny.yaml", overrides)


def test_stops_after_patience_plus_one_evaluations_without_improvement():
    """Patience 2: the original's `decrease_counts > decrease_counts_max` fires at the third bad evaluation."""
    cfg = _cfg(**{"train.stopping_criterion": "_valid_mlm_ppl,2"})
    state = new_train_state()
    decisions = [update_selection(cfg, {"valid_mlm_ppl": v}, state) for v in (10.0, 9.0, 9.5, 9.2, 9.1)]
    assert decisions == [False, False, False, False, True]
    assert state["stopping"] == {"best": 9.0, "bad_evals": 3}
    assert state["best"] == {"valid_mlm_ppl": 9.0}
    assert stopping_metrics(cfg, state) == {"stopping_best": 9.0, "stopping_bad_evals": 3.0}


def test_an_improvement_resets_the_count():
    cfg = _cfg(**{"train.stopping_criterion": "_valid_mlm_ppl,2"})
    state = new_train_state()
    decisions = [update_selection(cfg, {"valid_mlm_ppl": v}, state) for v in (10.0, 11.0, 12.0, 8.0, 9.0, 9.0)]
    assert decisions == [False] * 6
    assert state["stopping"] == {"best": 8.0, "bad_evals": 2}


def test_higher_is_better_without_underscore():
    cfg = _cfg(**{"train.stopping_criterion": "valid_en_mlm_acc,1", "train.validation_metrics": ["valid_en_mlm_acc"]})
    state = new_train_state()
    assert not update_selection(cfg, {"valid_en_mlm_acc": 10.0}, state)
    assert not update_selection(cfg, {"valid_en_mlm_acc": 9.0}, state)  # 1 bad evaluation: within the patience
    assert update_selection(cfg, {"valid_en_mlm_acc": 9.5}, state)
    assert state["best"] == {"valid_en_mlm_acc": 10.0}


def test_stop_record_and_tags_say_why():
    cfg = _cfg(**{"train.stopping_criterion": "_valid_mlm_ppl,0"})
    state = new_train_state()
    update_selection(cfg, {"valid_mlm_ppl": 5.0}, state)
    state["stopped"] = update_selection(cfg, {"valid_mlm_ppl": 6.0}, state)
    record = stop_record(cfg, state, 1)
    assert record["early"] and record["metric"] == "valid_mlm_ppl" and record["epoch"] == 1
    assert "1 evaluations in a row" in record["reason"] and "patience 0" in record["reason"]
    tags = stop_tags(record)
    assert tags["xlm.stop.early"] == "true" and tags["xlm.stop.metric"] == "valid_mlm_ppl"
    assert tags["xlm.stop.epoch"] == "1" and tags["xlm.stop.reason"] == record["reason"]
    plain = stop_record(_cfg(), new_train_state(), 2)
    assert stop_tags(plain) == {
        "xlm.stop.early": "false",
        "xlm.stop.epoch": "2",
        "xlm.stop.reason": "reached train.max_epochs=3",
    }
    assert stopping_metrics(_cfg(), new_train_state()) == {}


def test_unknown_stopping_metric_is_a_clear_error():
    cfg = _cfg(**{"train.stopping_criterion": "_valid_de_mlm_ppl,3"})
    with pytest.raises(ValueError, match="valid_de_mlm_ppl.*not computed"):
        update_selection(cfg, {"valid_mlm_ppl": 1.0}, new_train_state())
