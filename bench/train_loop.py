"""Whole-loop pretraining throughput on Ray Train with 1 and 2 CPU workers (real binarized data).

Builds the tiny config's data (real WikiExtractor, fastBPE, binarization on the offline demo corpora)
in a temporary directory, then runs `launch()` with 1 and with 2 workers on the same data and
model, and prints training tokens per second summed over workers (evaluation excluded) as reported
by the loop for the last epoch. Last line: `ratio=<2 workers / 1 worker>`.

    .venv/bin/python bench/train_loop.py [--emb-dim 256 --layers 4 --steps 60 --epochs 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")

REPO = Path(__file__).resolve().parent.parent


def prepare(workdir: Path):
    from xlm_core.config import load_config
    from xlm_core.data import stages

    cfg = load_config(REPO / "configs" / "tiny.yaml", {"experiment.workdir": str(workdir)})
    stages.run_all(cfg)
    return cfg


def run(cfg, workers: int, args: argparse.Namespace, storage: Path) -> float:
    from xlm_core.train.ray_launcher import launch

    cfg = cfg.model_copy(deep=True)
    cfg.scaling.num_workers = workers
    cfg.model.emb_dim, cfg.model.n_layers, cfg.model.n_heads = args.emb_dim, args.layers, args.heads
    cfg.train.steps_per_epoch, cfg.train.max_epochs = args.steps, args.epochs
    cfg.train.eval_max_batches = 2
    cfg.tracking.system_metrics = False
    cfg.checkpoint.storage_path = str(storage / f"w{workers}")
    outcome = launch(cfg, run_id=None, tracking_uri=None)
    # the last epoch's figure: the first includes warm-up (allocations, DDP buckets)
    return float(outcome.metrics["train_tokens_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emb-dim", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60, help="updates per epoch")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = prepare(Path(tmp) / "{name}")
        one = run(cfg, 1, args, Path(tmp))
        two = run(cfg, 2, args, Path(tmp))
    print(f"shape: {args.layers} x {args.emb_dim}, batch 16 x 64 stream / 1200-token pairs, CPU fp32, 1 thread/worker")
    print(f"1 worker : {one:,.0f} train tokens/s")
    print(f"2 workers: {two:,.0f} train tokens/s")
    print(f"ratio={two / one:.2f}")


if __name__ == "__main__":
    main()
