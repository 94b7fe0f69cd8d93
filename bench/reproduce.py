"""The paper's TLM result at small scale: MLM + TLM pretraining aligns en and fr better than MLM alone.

Lample & Conneau (2019), "Cross-lingual Language Model Pretraining": adding TLM on parallel sentences to
MLM aligns the languages' representations and improves zero-shot transfer. Here two pretraining variants
run on the offline demo corpora (`data.demo_mirror`: man pages as Wikipedia dumps, gettext catalogs as an
OPUS GNOME zip) with the same compute budget:

- `mlm`: `objectives.mlm_steps: [en, fr]`;
- `mlm+tlm`: `[en, fr, en-fr]` (the `xlm` schedule runs 2 MLM updates and 1 TLM update per iteration);

the same model, the same number of updates (`train.steps_per_epoch x train.max_epochs`) and about the
same tokens per update: an MLM update is `batch_size x bptt` stream tokens, a TLM update length-sorted
pairs cut at `objectives.tokens_per_batch`, which this script sets to that product. Each variant is
pretrained once per seed (`--seeds`: `experiment.seed`, i.e. initial weights, masks, sampling and the
fine-tuning), then fine-tuned from its last checkpoint on the English demo NLI set (`xnli.demo`,
`xnli.mode: zero-shot`: English training pairs only) and scored in French with the French language id.

Measured on data no run trained on:

- retrieval P@1 en->fr and fr->en on the en-fr test split, and the TLM context gain (masked-word accuracy
  with the other side visible minus alone), from the alignment probe the loop runs at each evaluation
  (`xlm_core.evaluation.alignment`, metrics `test_en_fr_retrieval_p1_*`, `test_en_fr_tlm_context_gain`);
- the valid MLM perplexity (mean of en and fr) beside the unigram perplexity of the same targets;
- XNLI test accuracy in en and, zero-shot, in fr after the last fine-tuning epoch (no French score picks
  the epoch).

The data is prepared once (content-cached stages; the config's `experiment.seed` fixes splits and BPE,
so every seed sees the same held-out sets) in the bench work directory; each (variant, seed) keeps its
last checkpoint in its own run directory `<workdir>/reproduce/<variant>-seed<k>/`. Pretraining and
fine-tuning run in this process on one worker (`xlm_core.train.loop.train`, `train.finetune.finetune`,
no Ray): the loop the Ray workers run, without the cluster start-up. MLflow: one experiment (the sqlite
store `<workdir>/mlflow.db`), one parent run per invocation, and under it a `pretrain` and an `xnli` run
per (variant, seed), tagged `xlm.variant` and `xlm.seed`; each `pretrain` run also carries the row's
figures as `reproduce_*` metrics.

    .venv/bin/python bench/reproduce.py            # configs/reproduce.yaml, seeds 0,1: about 40 min on 2 cores
    .venv/bin/python bench/reproduce.py --quick    # configs/tiny.yaml-sized smoke run
    .venv/bin/python bench/reproduce.py --seeds 0,1,2 --set train.max_epochs=8

Prints the table and writes it to bench/RESULTS.md (its section, one for full and one for quick runs,
replaced on each run). Last line: `tlm_gain=<mean over seeds of MLM+TLM retrieval P@1 / MLM retrieval P@1>`.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import math
import os
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import torch

from tasks.tracking import client_for, ensure_experiment, log_params, source_tags
from xlm_core.config import PipelineConfig, load_config, parse_overrides, to_dict
from xlm_core.data import nli_stages, stages
from xlm_core.io import atomic_open
from xlm_core.train.finetune import finetune, model_vocabulary
from xlm_core.train.loop import TrainHooks, train
from xlm_core.train.metrics import MLflowLogger

logger = logging.getLogger("reproduce")

REPO = Path(__file__).resolve().parent.parent

RESULTS = REPO / "bench" / "RESULTS.md"
VARIANTS = {"mlm": ["en", "fr"], "mlm+tlm": ["en", "fr", "en-fr"]}
# On configs/tiny.yaml: one worker, 60 updates, one short fine-tuning epoch.
QUICK_OVERRIDES: dict[str, Any] = {
    "experiment.name": "reproduce-quick",
    "tracking.experiment": "reproduce-quick",
    "tracking.system_metrics": False,
    "scaling.num_workers": 1,
    "scaling.torch_threads": 2,
    "train.steps_per_epoch": 30,
    "train.max_epochs": 2,
    "xnli.enabled": True,
    "xnli.demo": True,
    "xnli.langs": ["en", "fr"],
    "xnli.demo_train_pairs": 600,
    "xnli.demo_eval_pairs": 60,
    "xnli.epoch_size": 240,
    "xnli.max_epochs": 1,
    "xnli.max_len": 128,
    "xnli.lr_encoder": 5e-5,
    "xnli.lr_classifier": 5e-4,
}
PAIR = "en_fr"  # the probed pair's metric stem
COLUMNS = [
    ("p1_en_fr", "P@1 en→fr"),
    ("p1_fr_en", "P@1 fr→en"),
    ("p1", "P@1 mean"),
    ("context_gain", "context gain (pp)"),
    ("valid_ppl", "valid MLM ppl"),
    ("unigram_ppl", "unigram ppl"),
    ("xnli_en", "XNLI en"),
    ("xnli_fr", "XNLI fr (zero-shot)"),
]


@dataclass
class RunResult:
    variant: str
    seed: int
    figures: dict[str, float]  # COLUMNS' keys and `probe_pairs`
    pretrain_s: float
    finetune_s: float


def bench_config(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> PipelineConfig:
    """The bench's config: `--config` (or tiny.yaml with QUICK_OVERRIDES), `--set`, then `extra`."""
    overrides = dict(QUICK_OVERRIDES) if args.quick else {}
    overrides |= parse_overrides(args.set)
    if args.workdir:
        overrides["experiment.workdir"] = args.workdir
    cfg = load_config(REPO / "configs" / "tiny.yaml" if args.quick else args.config, overrides)
    per_update = cfg.objectives.batch_size * cfg.objectives.bptt  # an MLM update's stream tokens
    overrides |= {"objectives.tokens_per_batch": per_update} | (extra or {})
    # The store under the work directory, whatever $MLFLOW_TRACKING_URI says (unless --set names one).
    overrides.setdefault("tracking.tracking_uri", f"sqlite:///{cfg.workdir / 'mlflow.db'}")
    cfg = load_config(REPO / "configs" / "tiny.yaml" if args.quick else args.config, overrides)
    if cfg.xnli.mode != "zero-shot" or "fr" not in cfg.xnli.langs or cfg.data.pairs != ["en-fr"]:
        raise ValueError(
            "reproduce: needs xnli.mode=zero-shot, fr in xnli.langs and data.parallel en-fr only "
            f"(got {cfg.xnli.mode}, {cfg.xnli.langs}, {cfg.data.pairs}); fix --config or --set"
        )
    if cfg.scaling.num_workers != 1:
        raise ValueError("reproduce: trains in this process on one worker; set scaling.num_workers=1")
    return cfg


def pretrain(cfg: PipelineConfig, run_dir: Path, metric_logger: MLflowLogger) -> tuple[dict[str, float], Path]:
    """Train from scratch; the last epoch's checkpoint is kept as `run_dir/checkpoint`."""
    kept = run_dir / "checkpoint"

    def keep(metrics: dict[str, float], checkpoint: Path | None) -> None:  # the loop deletes it afterwards
        if checkpoint is None:
            return
        partial = run_dir / "checkpoint.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(checkpoint, partial)
        shutil.rmtree(kept, ignore_errors=True)
        partial.rename(kept)

    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, never a resumed one
    run_dir.mkdir(parents=True)
    result = train(cfg, TrainHooks(report=keep, metric_logger=metric_logger))
    return result["metrics"], kept


def finetune_xnli(cfg: PipelineConfig, checkpoint: Path, metric_logger: MLflowLogger) -> dict[str, float]:
    """The demo NLI set prepared with the checkpoint's vocabulary (cached: the same for every run),
    then zero-shot fine-tuning; the last epoch's accuracies."""
    zips = {key: nli_stages.fetch_nli(cfg, url) for key, url in nli_stages.nli_sources(cfg).items()}
    vocab = model_vocabulary(cfg, model=str(checkpoint), checkpoint_dir=None)
    text = nli_stages.read_nli(cfg, zips["xnli_url"], zips["multinli_url"], vocab["langs"], zips["xnli_mt_url"])
    for unit in text["units"]:
        nli_stages.prepare_nli_unit(cfg, unit, vocab)
    data_dir = str(nli_stages.nli_bin_dir(vocab))
    hooks = TrainHooks(metric_logger=metric_logger)
    return finetune(cfg, hooks, model_path=vocab["model"], data_dir=data_dir, langs=vocab["langs"])["metrics"]


def figures(pretrained: dict[str, float], finetuned: dict[str, float]) -> dict[str, float]:
    test = f"test_{PAIR}"
    return {
        "p1_en_fr": pretrained[f"{test}_retrieval_p1_en_fr"],
        "p1_fr_en": pretrained[f"{test}_retrieval_p1_fr_en"],
        "p1": pretrained[f"{test}_retrieval_p1"],
        "context_gain": pretrained[f"{test}_tlm_context_gain"],
        "valid_ppl": pretrained["valid_mlm_ppl"],
        "unigram_ppl": pretrained["valid_mlm_unigram_ppl"],
        "xnli_en": finetuned["xnli_test_en_acc"],
        "xnli_fr": finetuned["xnli_test_fr_acc"],
        "probe_pairs": pretrained[f"{test}_probe_pairs"],
    }


class Tracking:
    """One MLflow experiment, one parent run for this invocation, child runs tagged by variant and seed."""

    def __init__(self, cfg: PipelineConfig, *, quick: bool) -> None:
        self.cfg = cfg
        self.client = client_for(cfg)
        self.experiment_id = ensure_experiment(cfg)
        tags = source_tags() | {"xlm.stage": "reproduce", "xlm.bench": "reproduce", "xlm.quick": str(quick).lower()}
        name = f"reproduce-{datetime.datetime.now():%Y%m%d-%H%M%S}"
        self.parent_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id

    @contextmanager
    def child(self, cfg: PipelineConfig, *, stage: str, variant: str, seed: int) -> Iterator[MLflowLogger]:
        """A child run of the parent, FINISHED when the block completes, FAILED when it raises."""
        tags = source_tags() | {
            "mlflow.parentRunId": self.parent_id,
            "xlm.stage": stage,
            "xlm.variant": variant,
            "xlm.seed": str(seed),
        }
        run = self.client.create_run(self.experiment_id, run_name=f"{stage}-{variant}-seed{seed}", tags=tags)
        run_id = run.info.run_id
        log_params(self.client, run_id, to_dict(cfg))
        try:
            yield MLflowLogger(tracking_uri=cfg.tracking_uri, run_id=run_id)
        except BaseException:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        self.client.set_terminated(run_id, status="FINISHED")

    def summary(self, metrics: dict[str, float], table_path: Path) -> None:
        MLflowLogger(tracking_uri=self.cfg.tracking_uri, run_id=self.parent_id).log_metrics(metrics, step=0)
        self.client.log_artifact(self.parent_id, str(table_path))
        self.client.set_terminated(self.parent_id, status="FINISHED")

    def failed(self) -> None:
        self.client.set_terminated(self.parent_id, status="FAILED")


def run_one(cfg: PipelineConfig, tracking: Tracking, variant: str, seed: int) -> RunResult:
    run_dir = cfg.workdir / "reproduce" / f"{variant.replace('+', '_')}-seed{seed}"
    with tracking.child(cfg, stage="pretrain", variant=variant, seed=seed) as pretrain_logger:
        start = time.monotonic()
        pretrained, checkpoint = pretrain(cfg, run_dir, pretrain_logger)
        pretrain_s = time.monotonic() - start
    with tracking.child(cfg, stage="xnli", variant=variant, seed=seed) as xnli_logger:
        start = time.monotonic()
        finetuned = finetune_xnli(cfg, checkpoint, xnli_logger)
        finetune_s = time.monotonic() - start
    row = figures(pretrained, finetuned)
    update = cfg.train.steps_per_epoch * cfg.train.max_epochs
    pretrain_logger.log_metrics({f"reproduce_{key}": value for key, value in row.items()}, step=update)
    logger.info("%s seed %d: %s", variant, seed, {k: round(v, 2) for k, v in row.items()})
    return RunResult(variant, seed, row, pretrain_s, finetune_s)


def mean_spread(values: list[float]) -> tuple[float, float]:
    """Mean and half the range (the distance from the mean to either value for two seeds)."""
    return sum(values) / len(values), (max(values) - min(values)) / 2


def tlm_gain(results: list[RunResult]) -> float:
    """Mean over seeds of MLM+TLM retrieval P@1 / MLM retrieval P@1 (same seed)."""
    by_key = {(r.variant, r.seed): r.figures["p1"] for r in results}
    ratios = []
    for seed in sorted({r.seed for r in results}):
        tlm, mlm = by_key[("mlm+tlm", seed)], by_key[("mlm", seed)]
        ratios.append(tlm / mlm if mlm else (math.inf if tlm else math.nan))
    return sum(ratios) / len(ratios)


def table(results: list[RunResult]) -> str:
    lines = [
        "| variant | seed | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---|---|" + "---:|" * len(COLUMNS),
    ]
    for variant in VARIANTS:
        rows = [r for r in results if r.variant == variant]
        for r in rows:
            cells = [f"{r.figures[key]:.1f}" for key, _ in COLUMNS]
            lines.append(f"| {variant} | {r.seed} | " + " | ".join(cells) + " |")
        stats = [mean_spread([r.figures[key] for r in rows]) for key, _ in COLUMNS]
        lines.append(f"| **{variant}** | mean ± spread | " + " | ".join(f"{m:.1f} ± {s:.1f}" for m, s in stats) + " |")
    return "\n".join(lines)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs ({model}), torch {torch.__version__}, CPU fp32; load average at the end {load}"


def section(cfg: PipelineConfig, results: list[RunResult], *, quick: bool, wall_s: float, gain: float) -> str:
    """The RESULTS.md section, between its markers."""
    marker = "reproduce.py --quick" if quick else "reproduce.py"
    obj, model, x = cfg.objectives, cfg.model, cfg.xnli
    updates = cfg.train.steps_per_epoch * cfg.train.max_epochs
    heading = "smoke run, not a result" if quick else "MLM vs MLM + TLM at the same budget"
    times = ", ".join(
        f"{r.variant} seed {r.seed} {r.pretrain_s / 60:.1f} + {r.finetune_s / 60:.1f} min" for r in results
    )
    return "\n".join(
        [
            f"<!-- {marker}: begin (written by bench/reproduce.py; replaced on each run) -->",
            f"## `{marker}`: {heading}",
            "",
            f"{datetime.date.today().isoformat()}, `{shlex.join(['.venv/bin/python', *sys.argv])}`, "
            f"{machine()}. Wall time {wall_s / 60:.1f} min (pretraining + fine-tuning per run: {times}).",
            "",
            f"Each run: {model.n_layers} x {model.emb_dim} ({model.n_heads} heads), {updates} updates of about "
            f"{obj.batch_size * obj.bptt} tokens (MLM: {obj.batch_size} x {obj.bptt} stream, TLM: pairs up to "
            f"{obj.tokens_per_batch} tokens), one worker; then fine-tuning on {x.max_epochs} x {x.epoch_size} "
            f"English demo NLI pairs. Retrieval and context gain on the {results[0].figures['probe_pairs']:.0f} "
            "pairs of the en-fr test split, valid MLM perplexity the mean of en and fr, XNLI the test accuracy of "
            "the last epoch; spread = half the range over seeds.",
            "",
            table(results),
            "",
            f"`tlm_gain={gain:.3f}` (mean over seeds of MLM+TLM retrieval P@1 / MLM retrieval P@1).",
            f"<!-- {marker}: end -->",
        ]
    )


def record(text: str, marker: str) -> None:
    """Replace the section between `marker`'s begin/end comments in RESULTS.md, or append it."""
    current = RESULTS.read_text(encoding="utf-8") if RESULTS.is_file() else "# Benchmark results\n"
    begin, end = f"<!-- {marker}: begin", f"<!-- {marker}: end -->"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        tail = rest.split(end, 1)[1]
        updated = head + text + tail
    else:
        updated = current.rstrip("\n") + "\n\n" + text + "\n"
    with atomic_open(RESULTS) as handle:
        handle.write(updated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "reproduce.yaml"))
    parser.add_argument("--quick", action="store_true", help="configs/tiny.yaml-sized smoke run (ignores --config)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated experiment.seed values")
    parser.add_argument("--workdir", help="work directory (default: the config's experiment.workdir)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for name in ("reproduce", "xlm_core"):
        logging.getLogger(name).setLevel(logging.INFO)

    data_cfg = bench_config(args)
    logger.info("preparing the data in %s", data_cfg.workdir)
    stages.run_all(data_cfg)
    tracking = Tracking(data_cfg, quick=args.quick)
    results = []
    try:
        for seed in seeds:
            for variant, steps in VARIANTS.items():
                cfg = bench_config(args, {"objectives.mlm_steps": steps, "experiment.seed": seed})
                results.append(run_one(cfg, tracking, variant, seed))
    except BaseException:
        tracking.failed()
        raise
    gain = tlm_gain(results)
    wall_s = time.time() - psutil.Process().create_time()  # the whole process, imports included
    text = section(data_cfg, results, quick=args.quick, wall_s=wall_s, gain=gain)
    table_path = data_cfg.workdir / "reproduce" / "table.md"
    table_path.write_text(text + "\n", encoding="utf-8")
    summary = {"tlm_gain": gain, "wall_s": wall_s}
    for variant in VARIANTS:
        for key, _ in COLUMNS:
            mean, spread = mean_spread([r.figures[key] for r in results if r.variant == variant])
            summary |= {f"{variant.replace('+', '_')}/{key}": mean, f"{variant.replace('+', '_')}/{key}_spread": spread}
    tracking.summary(summary, table_path)
    record(text, "reproduce.py --quick" if args.quick else "reproduce.py")
    print(table(results))
    print(f"wall time {wall_s / 60:.1f} min; MLflow {data_cfg.tracking_uri}, experiment {data_cfg.mlflow_experiment}")
    print(f"tlm_gain={gain:.3f}")


if __name__ == "__main__":
    main()
