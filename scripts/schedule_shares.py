"""Print the share of updates each objective (CLM, MLM, TLM) gets under each `objectives.schedule`, for
every preset and the demo/tiny configs, from their step lists (xlm_core/train/README.md quotes it).

The objective shares of the `xlm` and `round_robin` schedules depend on the step lists only (with
lg_sampling_factor > 0 the `xlm` draw weights languages within the monolingual and the pair group,
never one group against the other). The `weighted` schedule's shares depend on the corpus sizes when
lg_sampling_factor > 0; the table gives them for -1 (uniform), the presets' setting for xnli15.

    .venv/bin/python scripts/schedule_shares.py
"""

from __future__ import annotations

from pathlib import Path

from xlm_core.config import load_config
from xlm_core.objectives.inputs import StepSpec, parse_steps
from xlm_core.train.schedule import SCHEDULES, StepSchedule, step_shares

ROOT = Path(__file__).resolve().parent.parent


def objective_of(step: StepSpec) -> str:
    if step.objective == "clm":
        return "CLM"
    return "MLM" if step.lang2 is None else "TLM"


def shares(steps: list[StepSpec], kind: str) -> dict[str, float]:
    schedule = StepSchedule(kind, steps, dict.fromkeys(steps, 1), -1, 0)
    totals: dict[str, float] = {}
    for step, share in step_shares(schedule).items():
        totals[objective_of(step)] = totals.get(objective_of(step), 0.0) + share
    return totals


def main() -> None:
    configs = sorted((ROOT / "configs" / "presets").glob("*.yaml")) + [ROOT / "configs" / "demo.yaml"]
    print("| config | steps | " + " | ".join(SCHEDULES) + " |")
    print("|---|---|" + "---|" * len(SCHEDULES))
    for path in configs:
        cfg = load_config(path)
        steps = parse_steps(cfg.objectives.clm_steps, cfg.objectives.mlm_steps)
        counts = {k: sum(objective_of(s) == k for s in steps) for k in ("CLM", "MLM", "TLM")}
        described = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        cells = []
        for kind in SCHEDULES:
            by_objective = shares(steps, kind)
            cells.append(" : ".join(f"{k} {100 * v:.1f}%" for k, v in by_objective.items()))
        print(f"| {path.stem} | {described} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
