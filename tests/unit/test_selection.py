"""Best-metric tracking and the `metric,patience` stopping criterion."""

from __future__ import annotations

import pytest

from tests.conftest import REPO
from xlm_core.config import load_config
from xlm_core.train.loop import new_train_state, update_selection


def _cfg(**overrides):
    return load_config(REPO / "configs" / "tiny.yaml", overrides)


def test_stops_after_patience_evaluations_without_improvement():
    cfg = _cfg(**{"train.stopping_criterion": "_valid_mlm_ppl,2"})
    state = new_train_state()
    decisions = [update_selection(cfg, {"valid_mlm_ppl": v}, state) for v in (10.0, 9.0, 9.5, 9.2, 8.0)]
    assert decisions == [False, False, False, True, False]
    assert state["stopping"] == {"best": 8.0, "bad_evals": 0}
    assert state["best"] == {"valid_mlm_ppl": 8.0}


def test_higher_is_better_without_underscore():
    cfg = _cfg(**{"train.stopping_criterion": "valid_en_mlm_acc,1", "train.validation_metrics": ["valid_en_mlm_acc"]})
    state = new_train_state()
    assert not update_selection(cfg, {"valid_en_mlm_acc": 10.0}, state)
    assert update_selection(cfg, {"valid_en_mlm_acc": 9.0}, state)
    assert state["best"] == {"valid_en_mlm_acc": 10.0}


def test_unknown_stopping_metric_is_a_clear_error():
    cfg = _cfg(**{"train.stopping_criterion": "_valid_de_mlm_ppl,3"})
    with pytest.raises(ValueError, match="valid_de_mlm_ppl.*not computed"):
        update_selection(cfg, {"valid_mlm_ppl": 1.0}, new_train_state())
