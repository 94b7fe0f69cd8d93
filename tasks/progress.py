"""Training progress in the Prefect run: a log line per logging window (update, losses, tokens/s,
elapsed, ETA) in the task's logs, and a progress artifact updated at every evaluation."""

from __future__ import annotations

import re
import time
from typing import Any

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.logging import get_run_logger

__all__ = ["TrainingProgress", "format_duration"]


def format_duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class TrainingProgress:
    """The `on_progress` callback of a Ray Train launch, called in the task's context.

    The rate behind the ETA is measured from the first event this task saw, so a resumed run
    (which starts at a later update) gets an honest estimate too.
    """

    def __init__(self, label: str, key: str) -> None:
        self.label = label
        self.logger = get_run_logger()
        self.start = time.monotonic()
        self.first: tuple[float, int] | None = None
        self.artifact_id = create_progress_artifact(0.0, key=key, description=f"{label}: starting the Ray workers")

    def _eta(self, update: int, total: int) -> str:
        now = time.monotonic()
        if self.first is None or update <= self.first[1]:
            rate = update / max(now - self.start, 1e-9)  # no second point yet: assume a fresh start
        else:
            rate = (update - self.first[1]) / max(now - self.first[0], 1e-9)
        return format_duration((total - update) / rate) if rate > 0 else "?"

    def __call__(self, event: dict[str, Any]) -> None:
        update, total = int(event["update"]), max(int(event["total_updates"]), 1)
        metrics = event.get("metrics") or {}
        timing = f"elapsed {format_duration(time.monotonic() - self.start)}, ETA {self._eta(update, total)}"
        epoch = f"epoch {event['epoch'] + 1}/{event['max_epochs']}"
        where = f"update {update}/{total} ({100 * update / total:.0f}%), {epoch}"
        if event["kind"] == "update":
            losses = " ".join(f"{k[6:]}={v:.3f}" for k, v in metrics.items() if k.startswith("train_"))
            speed = f"{metrics['tokens_per_s']:,.0f} tok/s | " if "tokens_per_s" in metrics else ""
            self.logger.info("%s %s: %s | %s%s", self.label, where, losses, speed, timing)
        else:
            shown = {k: round(v, 3) for k, v in metrics.items() if _shown_after_evaluation(k)}
            summary = ", ".join(f"{k}={v}" for k, v in sorted(shown.items()))
            stopped = " (stopping criterion met)" if event.get("stopped") else ""
            self.logger.info("%s %s evaluated%s: %s | %s", self.label, where, stopped, summary, timing)
            update_progress_artifact(
                self.artifact_id,
                100.0 * update / total,
                description=f"{self.label}, {where}: {summary or 'evaluated'}{stopped}; {timing}",
            )
        if self.first is None:
            self.first = (time.monotonic(), update)


_PROBE_MEAN = re.compile(r"^valid_[^_]+_[^_]+_(retrieval_p1|tlm_context_gain)$")


def _shown_after_evaluation(key: str) -> bool:
    """The figures of an evaluation's progress line: each valid perplexity, the unigram baseline of their
    mean, each pair's retrieval P@1 and TLM context gain (means of both directions), XNLI accuracies."""
    if key.startswith("xnli_valid_"):
        return key.endswith("_acc")
    if not key.startswith("valid_"):
        return False
    if key.endswith("_unigram_ppl"):
        return key in ("valid_mlm_unigram_ppl", "valid_clm_unigram_ppl")
    return key.endswith("_ppl") or bool(_PROBE_MEAN.match(key))
