"""Which objective step each optimizer update runs (`objectives.schedule`), and how long an epoch is.

- `xlm` (default), the original's `shuf_order` as `train.py` calls it: each iteration runs the CLM
  steps, then the MLM steps; within each of these groups it draws min(5, n_mono) monolingual steps
  and min(5, n_para) pair steps, with replacement, monolingual ones first. With
  `objectives.lg_sampling_factor` alpha > 0 a step's probability within its subgroup is n^alpha /
  sum n^alpha over the subgroup (n: training sentences of the language, pairs of the pair, both
  directions of a pair weighing the pair's size), which is the original's `set_sampling_probs`
  then `shuf_order` renormalisation; alpha = -1 draws uniformly. xnli15's 15 languages and 28
  directed pairs give 5 MLM + 5 TLM updates per iteration: MLM:TLM = 50:50.
- `round_robin`: every step in turn (MLM:TLM = the step counts' ratio, 15:28 for xnli15).
- `weighted`: one step per update drawn over all steps with q ~ n^alpha (uniform for alpha = -1).

Every draw is a pure function of (experiment.seed, iteration index), identical on every rank and
after a resume: the schedule needs no state of its own beyond the update counter. The original
draws from the process's global numpy RNG, so its exact sequence is not reproduced, only its law.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from xlm_core.config import PipelineConfig
from xlm_core.data.datasets import sampling_probs
from xlm_core.objectives.inputs import StepSpec

__all__ = ["DRAWS_PER_GROUP", "SCHEDULES", "StepSchedule", "build_schedule", "step_shares", "updates_per_epoch"]

SCHEDULES = ("xlm", "round_robin", "weighted")
DRAWS_PER_GROUP = 5  # the original's `shuf_order(..., n=5)`
_XLM_STREAM = 7919  # separates the xlm schedule's draws from any other stream seeded with experiment.seed


def _subgroups(steps: list[StepSpec]) -> list[list[StepSpec]]:
    """[CLM mono, CLM pairs, MLM mono, MLM pairs] (empty ones left out), in the original's order."""
    groups = []
    for objective in ("clm", "mlm"):
        for pairs in (False, True):
            group = [s for s in steps if s.objective == objective and (s.lang2 is not None) == pairs]
            if group:
                groups.append(group)
    return groups


def _probs(group: list[StepSpec], sizes: Mapping[StepSpec, int], alpha: float) -> np.ndarray | None:
    """Within-group probabilities (None: uniform, as the original passes p=None for alpha = -1)."""
    if alpha == -1:
        return None
    q = sampling_probs({str(i): sizes[s] for i, s in enumerate(group)}, alpha)
    return np.array([q[str(i)] for i in range(len(group))])


class StepSchedule:
    """update -> step. `iteration(k)` is the k-th group of `iteration_length` consecutive updates."""

    def __init__(self, kind: str, steps: list[StepSpec], sizes: Mapping[StepSpec, int], alpha: float, seed: int):
        if kind not in SCHEDULES:
            raise ValueError(f"objectives.schedule: unknown schedule {kind!r}; use one of {', '.join(SCHEDULES)}")
        if not steps:
            raise ValueError("objectives: no training steps (set clm_steps or mlm_steps)")
        self.kind, self.steps, self.alpha, self.seed = kind, list(steps), alpha, seed
        self.groups = _subgroups(self.steps)
        self.group_probs = [_probs(g, sizes, alpha) for g in self.groups]
        if kind == "weighted":
            # As the former default for alpha > 0: one draw over every step (keys name+objective).
            probs = sampling_probs({s.name + s.objective: sizes[s] for s in self.steps}, alpha)
            self.weights = np.array([probs[s.name + s.objective] for s in self.steps])
        self.iteration_length = {
            "xlm": sum(min(DRAWS_PER_GROUP, len(g)) for g in self.groups),
            "round_robin": len(self.steps),
            "weighted": 1,
        }[kind]
        self._cached: tuple[int, list[StepSpec]] | None = None

    def iteration(self, index: int) -> list[StepSpec]:
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        if self.kind == "round_robin":
            drawn = list(self.steps)
        elif self.kind == "weighted":
            rng = np.random.default_rng([self.seed, index])  # the former `_step_schedule` stream, unchanged
            drawn = [self.steps[int(rng.choice(len(self.steps), p=self.weights))]]
        else:
            rng = np.random.default_rng([self.seed, _XLM_STREAM, index])
            drawn = []
            for group, probs in zip(self.groups, self.group_probs, strict=True):
                picks = rng.choice(len(group), size=min(DRAWS_PER_GROUP, len(group)), p=probs, replace=True)
                drawn += [group[int(i)] for i in picks]
        self._cached = (index, drawn)
        return drawn

    def step_at(self, update: int) -> StepSpec:
        """The step of 0-based update `update` (the count of updates done before it)."""
        index, offset = divmod(update, self.iteration_length)
        return self.iteration(index)[offset]


def build_schedule(cfg: PipelineConfig, steps: list[StepSpec], sizes: Mapping[StepSpec, int]) -> StepSchedule:
    """The configured schedule; `sizes` are the full training sets' sentences / pairs (same on every rank)."""
    obj = cfg.objectives
    return StepSchedule(obj.schedule, steps, sizes, obj.lg_sampling_factor, cfg.experiment.seed)


def updates_per_epoch(cfg: PipelineConfig, schedule: StepSchedule) -> int:
    """`train.steps_per_epoch`, or with `train.epoch_size` the original's count: its `while n_sentences <
    epoch_size` runs whole iterations and every step adds `batch_size` (here each update's micro-batches)."""
    if cfg.train.epoch_size is None:
        return cfg.train.steps_per_epoch
    per_iteration = schedule.iteration_length * cfg.objectives.batch_size * cfg.optim.accumulate_gradients
    return schedule.iteration_length * math.ceil(cfg.train.epoch_size / per_iteration)


def step_shares(schedule: StepSchedule) -> dict[StepSpec, float]:
    """Expected share of the updates that each step gets (what the draws converge to)."""
    if schedule.kind == "round_robin":
        return {s: 1 / len(schedule.steps) for s in schedule.steps}
    if schedule.kind == "weighted":
        return {s: float(w) for s, w in zip(schedule.steps, schedule.weights, strict=True)}
    shares: dict[StepSpec, float] = dict.fromkeys(schedule.steps, 0.0)
    for group, probs in zip(schedule.groups, schedule.group_probs, strict=True):
        draws = min(DRAWS_PER_GROUP, len(group))
        for i, step in enumerate(group):
            p = 1 / len(group) if probs is None else float(probs[i])
            shares[step] += draws * p / schedule.iteration_length
    return shares
