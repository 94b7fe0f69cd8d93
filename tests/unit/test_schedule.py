"""Step schedules: the original's `shuf_order` draw (default), round robin and one weighted draw per update."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from xlm_core.config import load_config
from xlm_core.objectives.inputs import StepSpec, parse_steps
from xlm_core.train.schedule import StepSchedule, build_schedule, step_shares, updates_per_epoch

REPO = Path(__file__).resolve().parents[2]
XNLI15 = REPO / "configs" / "presets" / "xlm-mlm-tlm-xnli15-1024.yaml"


def _original_shares(steps: list[StepSpec], sizes: dict[StepSpec, int], alpha: float) -> dict[StepSpec, float]:
    """The original's law, written from train.py / utils.py: per iteration `shuf_order` draws
    min(5, n) of the monolingual and min(5, n) of the pair steps with replacement, with
    p = (n / N)^alpha renormalised (set_sampling_probs), then renormalised over the group's steps."""
    mono = [s for s in steps if s.lang2 is None]
    para = [s for s in steps if s.lang2 is not None]
    per_iteration = min(5, len(mono)) + min(5, len(para))
    shares = {}
    for group in (mono, para):
        total = sum(sizes[s] for s in group)
        p = np.array([(sizes[s] / total) ** alpha if alpha != -1 else 1.0 for s in group])
        p /= p.sum()
        for step, prob in zip(group, p, strict=True):
            shares[step] = min(5, len(group)) * prob / per_iteration
    return shares


def test_xnli15_draws_five_mlm_and_five_tlm_steps_every_iteration():
    cfg = load_config(XNLI15)
    steps = parse_steps(cfg.objectives.clm_steps, cfg.objectives.mlm_steps)
    assert (len(steps), cfg.objectives.schedule) == (43, "xlm")
    schedule = build_schedule(cfg, steps, dict.fromkeys(steps, 1000))
    assert schedule.iteration_length == 10
    counts: Counter[StepSpec] = Counter()
    for index in range(3000):
        drawn = schedule.iteration(index)
        assert [s.lang2 is None for s in drawn] == [True] * 5 + [False] * 5  # monolingual first, as the original
        counts.update(drawn)
    assert [schedule.step_at(u) for u in range(20, 30)] == schedule.iteration(2)
    total = sum(counts.values())
    mlm = sum(n for s, n in counts.items() if s.lang2 is None) / total
    assert mlm == 0.5  # the original's 50:50 (round robin gives 15:28)
    expected = _original_shares(steps, dict.fromkeys(steps, 1000), -1)
    assert step_shares(schedule) == pytest.approx(expected)
    for step in steps:  # uniform within a group: 1/30 for a language, 1/56 for a pair direction
        assert counts[step] / total == pytest.approx(expected[step], abs=0.006), step.name


def test_alpha_weighted_corpora_follow_the_original_formula():
    steps = parse_steps([], ["en", "fr", "de", "en-fr", "fr-en", "de-en"])
    sizes = dict(zip(steps, [1_000_000, 100_000, 10_000, 50_000, 50_000, 2_000], strict=True))
    schedule = StepSchedule("xlm", steps, sizes, 0.5, seed=4)
    assert schedule.iteration_length == 6
    expected = _original_shares(steps, sizes, 0.5)
    assert step_shares(schedule) == pytest.approx(expected)
    counts = Counter(schedule.step_at(u) for u in range(6 * 20_000))
    for step in steps:
        assert counts[step] / (6 * 20_000) == pytest.approx(expected[step], abs=0.004), step.name
    # the group shares never depend on the sizes: 3 monolingual and 3 pair draws per iteration
    assert sum(expected[s] for s in steps[:3]) == pytest.approx(0.5)
    # the same law on every rank and after a resume: a function of (seed, iteration) only
    again = StepSchedule("xlm", steps, sizes, 0.5, seed=4)
    assert [again.step_at(u) for u in range(500, 600)] == [schedule.step_at(u) for u in range(500, 600)]


def test_round_robin_and_weighted_reproduce_the_former_schedules():
    steps = parse_steps(["en"], ["en", "fr", "en-fr"])
    sizes = dict(zip(steps, [300, 300, 200, 100], strict=True))
    robin = StepSchedule("round_robin", steps, sizes, -1, seed=0)
    assert [robin.step_at(u) for u in range(9)] == [steps[u % 4] for u in range(9)]
    weighted = StepSchedule("weighted", steps, sizes, 0.7, seed=3)
    p = np.array([300, 300, 200, 100], dtype=float) / 900
    q = p**0.7 / (p**0.7).sum()
    former = [steps[int(np.random.default_rng([3, u]).choice(4, p=q))] for u in range(50)]
    assert [weighted.step_at(u) for u in range(50)] == former
    assert list(step_shares(weighted).values()) == pytest.approx(list(q))


def test_clm_steps_come_before_mlm_steps_in_an_iteration():
    steps = parse_steps(["en", "fr"], ["en", "en-fr"])
    schedule = StepSchedule("xlm", steps, dict.fromkeys(steps, 1), -1, seed=0)
    assert schedule.iteration_length == 4
    for index in range(20):
        assert [s.objective for s in schedule.iteration(index)] == ["clm", "clm", "mlm", "mlm"]


def test_epoch_size_counts_sentences_as_the_original():
    """Every update counts batch_size x accumulate_gradients sentences; epochs end after whole iterations."""
    cfg = load_config(XNLI15, {"train.epoch_size": 200_000})
    steps = parse_steps(cfg.objectives.clm_steps, cfg.objectives.mlm_steps)
    assert updates_per_epoch(cfg, build_schedule(cfg, steps, dict.fromkeys(steps, 1))) == 6250
    tiny = load_config(REPO / "configs" / "tiny.yaml", {"train.epoch_size": 100, "optim.accumulate_gradients": 2})
    steps = parse_steps(tiny.objectives.clm_steps, tiny.objectives.mlm_steps)
    schedule = build_schedule(tiny, steps, dict.fromkeys(steps, 1))
    assert updates_per_epoch(tiny, schedule) == 3 * 2  # ceil(100 / (3 x 16 x 2)) iterations of 3 updates
    assert updates_per_epoch(load_config(REPO / "configs" / "tiny.yaml"), schedule) == 30  # steps_per_epoch


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="objectives.lg_sampling_factor"):
        load_config(REPO / "configs" / "tiny.yaml", {"objectives.lg_sampling_factor": 0})
    with pytest.raises(ValueError, match="objectives.tokens_per_batch"):
        load_config(REPO / "configs" / "tiny.yaml", {"objectives.tokens_per_batch": 0})
    with pytest.raises(ValueError, match="objectives.schedule"):
        load_config(REPO / "configs" / "tiny.yaml", {"objectives.schedule": "shuffle"})
