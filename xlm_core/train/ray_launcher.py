"""Run `loop.train` on a Ray Train worker group (the only module that imports Ray).

The driver owns the MLflow run: it passes `run_id` and the tracking URI to the workers and only
rank 0 logs into that run, so a restarted worker group keeps logging into the same run. The Ray
run name is derived from the training-relevant config, so re-running an unchanged experiment
resumes from its latest checkpoint instead of starting over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xlm_core.checkpoint import PROGRESS_FILE
from xlm_core.config import PipelineConfig, config_from_dict, config_hash, to_dict
from xlm_core.io import file_digest
from xlm_core.paths import WorkLayout
from xlm_core.stage_cache import content_digest
from xlm_core.train.finetune import SELECTION_METRIC, finetune
from xlm_core.train.loop import TrainHooks, train
from xlm_core.train.metrics import MetricLogger, MLflowLogger, NullLogger
from xlm_core.train.preflight import check_finetuning_inputs, check_pretraining_inputs
from xlm_core.train.resume import resume_source

__all__ = [
    "TrainOutcome",
    "TrainingFailedError",
    "best_pretraining_checkpoint",
    "ensure_ray",
    "finetune_run_name",
    "finished_run",
    "launch",
    "launch_finetune",
    "pin_ray_address",
    "ray_run_name",
]

logger = logging.getLogger(__name__)

# Ray's local-only defaults: no token auth on a private single-machine instance.
# A local instance (demo, tests, one machine) has no nodes that a cloud drains: Ray Train's preemption
# watcher would only add an actor whose start-up logs an error-level line about its restart policy.
_LOCAL_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


# Worker-side loggers whose lines users cannot act on: the MLflow system-metrics monitor's
# "Skip logging GPU metrics" on CPU machines, and Ray Train's own copy of a training-function
# traceback (the driver reports that error once, see `TrainingFailedError`).
_QUIET_WORKER_LOGGERS = ("mlflow.system_metrics", "ray.train.v2._internal.util")

ProgressCallback = Callable[[dict[str, Any]], None]


class TrainingFailedError(RuntimeError):
    """A training run stopped by an error of its own code or data, reported once and not retried."""


@dataclass
class TrainOutcome:
    best_checkpoint: str  # the best checkpoint by the first validation metric (a local directory)
    best_checkpoints: dict[str, str]  # metric -> its best checkpoint (`<run>/best-<metric>`)
    latest_checkpoint: str
    metrics: dict[str, float]
    run_name: str
    storage_path: str
    stop: dict[str, Any] | None = None  # why pretraining ended (`selection.stop_record`), from progress.json


def _keep_best_callback(metric_keys: list[str]) -> Any:
    """A controller-side callback copying each improved checkpoint to `<run dir>/best-<metric>`, and
    each checkpoint reported with `periodic` to `<run dir>/periodic-<epoch>`.

    Ray Train keeps the latest `checkpoint.num_to_keep` checkpoints (or the best by one score); this
    keeps one best copy per validation metric (the original's `best-<metric>.pth`) and the original's
    `--save_periodic` copies (`periodic-<epoch>.pth`), on local or remote storage alike.
    """
    import posixpath

    import pyarrow.fs
    import ray.train

    class KeepBestPerMetric(ray.train.UserCallback):
        def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
            if checkpoint is None or not metrics:
                return
            copies = [f"best-{key}" for key in metric_keys if metrics[0].get(f"improved_{key}")]
            if metrics[0].get("periodic"):
                copies.append(f"periodic-{int(metrics[0]['epoch'])}")
            for name in copies:
                try:
                    self._replace(checkpoint, name)
                except Exception:  # losing a best or periodic copy must not stop a long run
                    logger.exception("could not keep the checkpoint copy %s", name)

        @staticmethod
        def _replace(checkpoint: Any, name: str) -> None:
            fs, source = checkpoint.filesystem, checkpoint.path
            dest = posixpath.join(posixpath.dirname(source), name)
            staging, old = dest + ".tmp", dest + ".old"
            for path in (staging, old):
                if fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
                    fs.delete_dir(path)
            fs.create_dir(staging, recursive=True)
            pyarrow.fs.copy_files(source, staging, source_filesystem=fs, destination_filesystem=fs)
            if fs.get_file_info(dest).type != pyarrow.fs.FileType.NotFound:
                fs.move(dest, old)
            fs.move(staging, dest)
            if fs.get_file_info(old).type != pyarrow.fs.FileType.NotFound:
                fs.delete_dir(old)

    return KeepBestPerMetric()


def _storage(cfg: PipelineConfig) -> str:
    """Where Ray Train keeps runs: `checkpoint.storage_path` (a directory or a URI), else the work directory's."""
    return cfg.checkpoint.storage_path or str(WorkLayout(cfg.workdir).ray_storage)


def ray_run_name(cfg: PipelineConfig) -> str:
    """Stable name per training setup: the same config resumes, a changed one starts afresh."""
    sections = ("data", "tokenization", "bpe", "model", "objectives", "optim", "train")
    relevant = {k: to_dict(getattr(cfg, k)) for k in sections}
    # Settings that do not change what a checkpoint means: raising max_epochs continues the run.
    for key in ("max_epochs", "stopping_criterion", "log_every", "eval_max_batches", "validation_metrics"):
        relevant["train"].pop(key)
    relevant["seed"] = cfg.experiment.seed
    return f"{cfg.experiment.name}-{config_hash(relevant)}"


def ensure_ray(cfg: PipelineConfig) -> None:
    """Connect to the configured cluster, or start a quiet local instance sized for the workers."""
    import ray

    if ray.is_initialized():
        return
    scaling = cfg.scaling
    if scaling.ray_address:
        ray.init(address=scaling.ray_address, logging_level=logging.WARNING)
        return
    for key, value in _LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    num_cpus = max(os.cpu_count() or 1, math.ceil(scaling.num_workers * scaling.cpus_per_worker))
    # The dashboard (127.0.0.1:8265) also serves the State API that Ray Train's cleaner polls.
    ray.init(
        num_cpus=num_cpus,
        logging_level=logging.ERROR,
        runtime_env={
            "env_vars": {"OMP_NUM_THREADS": str(scaling.torch_threads), "TOKENIZERS_PARALLELISM": "false"},
            "worker_process_setup_hook": "xlm_core.train.ray_launcher.pin_ray_address",
        },
    )


def pin_ray_address() -> None:
    """Ray worker start-up hook: name this instance in RAY_ADDRESS. Ray Train's helper actors look
    their cluster up through the State API, which, with no address, scans the machine and fails with
    "Found multiple active Ray instances" when another Ray runs there (another user, another session)."""
    import ray

    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address


def _quiet_worker_logging(*, progress_relayed: bool) -> None:
    """Worker logging: INFO progress lines unless the driver relays progress itself (then the
    workers' INFO lines would only repeat it in the terminal); warnings and errors always."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("xlm_core").setLevel(logging.WARNING if progress_relayed else logging.INFO)
    import ray.train.v2._internal.execution.context as ctx_module

    # "Reporting training result N" is logged at INFO under the module's file name.
    logging.getLogger(ctx_module.__file__).setLevel(logging.WARNING)
    for name in _QUIET_WORKER_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """The function every Ray Train worker runs. Errors of the training code itself (from reading
    the config to the last evaluation) become `DeterministicTrainingError`, which is not retried;
    collective and network errors (a peer or a node died) stay retryable."""
    import ray.train

    from xlm_core.train.ray_policy import DeterministicTrainingError, is_transient

    started: dict[str, TrainHooks] = {}
    try:
        _worker_body(loop_config, started)
    except Exception as e:
        if is_transient(e):
            raise
        hooks = started.get("hooks")
        raise DeterministicTrainingError(
            f"{type(e).__name__}: {e}",
            rank=ray.train.get_context().get_world_rank(),
            phase=hooks.phase if hooks else "worker start-up (reading the config, restoring the checkpoint)",
            traceback_text=traceback.format_exc(),
        ) from None


def _worker_body(loop_config: dict[str, Any], started: dict[str, TrainHooks]) -> None:
    import ray.train
    import ray.train.torch

    from xlm_core.train.ray_policy import put_progress

    queue = loop_config.get("progress_queue")
    _quiet_worker_logging(progress_relayed=queue is not None)
    cfg = config_from_dict(loop_config["config"])
    rank = ray.train.get_context().get_world_rank()
    if rank != 0:  # progress lines come from rank 0 only; other ranks report warnings and errors
        logging.getLogger("xlm_core").setLevel(logging.WARNING)
    metric_logger: MetricLogger = NullLogger()
    if rank == 0 and loop_config.get("run_id"):
        metric_logger = MLflowLogger(
            tracking_uri=loop_config["tracking_uri"],
            run_id=loop_config["run_id"],
            system_metrics=cfg.tracking.system_metrics,
            system_metrics_interval_s=cfg.tracking.system_metrics_interval_s,
        )

    def report(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)  # uploads it; `TrainHooks.emit` deletes the local copy

    restored = ray.train.get_checkpoint()
    try:
        with restored.as_directory() if restored else contextlib.nullcontext(None) as restore_dir:
            hooks = TrainHooks(
                restore_dir=Path(restore_dir) if restore_dir else None,
                report=report,
                metric_logger=metric_logger,
                device=ray.train.torch.get_device(),
            )
            if rank == 0:
                hooks.progress = lambda event: put_progress(queue, event)
            started["hooks"] = hooks
            # What the workers run: pretraining (`loop.train`) or XNLI fine-tuning, with its keyword arguments.
            body = finetune if loop_config.get("body") == "finetune" else train
            body(cfg, hooks, **loop_config.get("kwargs", {}))
    finally:
        metric_logger.close()


def _fix_for(summary: str) -> str:
    """The usual remedy for the errors a training function raises on bad data or settings."""
    if "index out of range" in summary:
        return (
            "a token id or a position lies beyond the model's tables: check model.max_position_embeddings "
            "against objectives.bptt/max_len and xnli.max_len, and re-run binarize if the dictionary changed"
        )
    if summary.startswith(("FileNotFoundError", "IsADirectoryError", "PermissionError")):
        return "a file it reads is missing or unreadable: re-run the data preparation (`xlm run CONFIG`)"
    if summary.startswith("ValueError"):
        return "the message above names the setting or file to change"
    return "this error repeats on every attempt, so the run was not restarted; the traceback shows where"


def launch(
    cfg: PipelineConfig,
    *,
    run_id: str | None,
    tracking_uri: str | None,
    on_progress: ProgressCallback | None = None,
) -> TrainOutcome:
    """Train with `cfg.scaling.num_workers` Ray workers; resume the run of the same name if one exists.

    With `scaling.min_workers`, a worker group that lost workers (a node died) restarts from the last
    checkpoint on as many workers as the cluster still has room for, down to `min_workers`.

    Args:
        on_progress: called in this process with rank 0's progress events (`loop.progress_event`).

    Raises:
        ValueError: inputs missing or inconsistent (checked before any worker starts).
        TrainingFailedError: the training function raised; not retried, since it would raise again.
    """
    check_pretraining_inputs(cfg)
    resume_source(cfg, None)  # a wrong train.resume_from fails here, not in every worker
    loop_config = {"config": to_dict(cfg), "run_id": run_id, "tracking_uri": tracking_uri}
    return _fit(
        cfg,
        loop_config,
        ray_run_name(cfg),
        cfg.train.validation_metrics,
        "pretraining",
        on_progress,
        keep_latest=True,
        elastic=True,
    )


def best_pretraining_checkpoint(cfg: PipelineConfig) -> str | None:
    """The best checkpoint (first validation metric) of this config's pretraining run in local storage, if any."""
    storage = _storage(cfg)
    if "://" in storage:
        return None
    path = Path(storage) / ray_run_name(cfg) / f"best-{cfg.train.validation_metrics[0].lstrip('_')}"
    return str(path) if path.is_dir() else None


def finetune_run_name(cfg: PipelineConfig, model_path: str, data_dir: str) -> str:
    """Stable name per fine-tuning setup: the `xnli` section (less run-length settings), the model's
    weights and the prepared data's content, so an unchanged setup resumes and a changed one (new
    weights, other source files or a new preprocessing, even at the same paths) starts afresh."""
    relevant = to_dict(cfg.xnli)
    for key in ("max_epochs", "log_every", "enabled"):
        relevant.pop(key)
    path = Path(model_path)
    weights = [path / n for n in ("state.pt", "model.safetensors", "pytorch_model.bin") if (path / n).is_file()]
    relevant |= {
        "model": file_digest(weights[0] if weights else path),
        "data": content_digest(Path(data_dir), cfg.workdir),
        "seed": cfg.experiment.seed,
        "scaling": [cfg.scaling.num_workers, cfg.scaling.use_gpu],
    }
    return f"{cfg.experiment.name}-xnli-{config_hash(relevant)}"


def launch_finetune(
    cfg: PipelineConfig,
    *,
    model_path: str,
    data_dir: str,
    langs: list[str],
    run_id: str | None,
    tracking_uri: str | None,
    on_progress: ProgressCallback | None = None,
) -> TrainOutcome:
    """XNLI fine-tuning on `cfg.scaling.num_workers` Ray workers; resumes the run of the same name.

    `best_checkpoint` is the epoch with the best average valid accuracy. Errors as for `launch`.
    """
    check_finetuning_inputs(model_path, data_dir)
    loop_config = {
        "config": to_dict(cfg),
        "run_id": run_id,
        "tracking_uri": tracking_uri,
        "body": "finetune",
        "kwargs": {"model_path": model_path, "data_dir": data_dir, "langs": list(langs)},
    }
    name = finetune_run_name(cfg, model_path, data_dir)
    return _fit(cfg, loop_config, name, [SELECTION_METRIC], "XNLI fine-tuning", on_progress)


def _fit(
    cfg: PipelineConfig,
    loop_config: dict[str, Any],
    name: str,
    validation_metrics: list[str],
    job: str,
    on_progress: ProgressCallback | None,
    *,
    keep_latest: bool = False,
    elastic: bool = False,
) -> TrainOutcome:
    from xlm_core.train.ray_policy import ProgressRelay

    ensure_ray(cfg)
    if on_progress is None:
        return _run_trainer(cfg, loop_config, name, validation_metrics, job, keep_latest, elastic)
    with ProgressRelay(on_progress) as relay:
        queued = loop_config | {"progress_queue": relay.queue}
        return _run_trainer(cfg, queued, name, validation_metrics, job, keep_latest, elastic)


def _run_trainer(
    cfg: PipelineConfig,
    loop_config: dict[str, Any],
    name: str,
    validation_metrics: list[str],
    job: str,
    keep_latest: bool = False,
    elastic: bool = False,
) -> TrainOutcome:
    """`keep_latest` (pretraining): Ray keeps the latest `checkpoint.num_to_keep` checkpoints, mid-epoch
    ones included, which carry no score; the best ones are kept apart (`_keep_best_callback`).
    `elastic` (pretraining): `scaling.min_workers` applies. Fine-tuning keeps a fixed worker count,
    since its global batch must divide among the workers."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from xlm_core.train.ray_policy import DeterministicTrainingError, FailFast, FailFastConfig

    storage = _storage(cfg)
    metric_keys = [m.lstrip("_") for m in validation_metrics]
    metric = validation_metrics[0]
    score_key, mode = metric.lstrip("_"), ("min" if metric.startswith("_") else "max")
    failure_config = FailFastConfig(max_failures=cfg.scaling.max_failures)
    failure_config.run_name = name
    scaling = cfg.scaling
    num_workers: int | tuple[int, int] = scaling.num_workers
    if elastic and scaling.min_workers is not None and scaling.min_workers < scaling.num_workers:
        # Ray Train's elastic range: (re)start on what the cluster can place, from min_workers up.
        num_workers = (scaling.min_workers, scaling.num_workers)
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=num_workers,
            use_gpu=scaling.use_gpu,
            resources_per_worker={"CPU": scaling.cpus_per_worker} | ({"GPU": 1} if scaling.use_gpu else {}),
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage,
            failure_config=failure_config,
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=cfg.checkpoint.num_to_keep,
                checkpoint_score_attribute=None if keep_latest else score_key,
                checkpoint_score_order=mode,
            ),
            callbacks=[_keep_best_callback(metric_keys), FailFast(name)],
            # Ray Train's own INFO lines (worker group started, checkpoint created) stay in Ray's logs.
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
    )
    logger.info("Ray Train run %s: %s workers, storage %s", name, num_workers, storage)
    try:
        result = trainer.fit()
    except ray.train.WorkerGroupError as e:
        errors = [x for x in e.worker_failures.values() if isinstance(x, DeterministicTrainingError)]
        if not errors:
            raise
        first = min(errors, key=lambda x: x.rank)
        report = WorkLayout(cfg.workdir).error_report(name)
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(first.traceback_text, encoding="utf-8")
        raise TrainingFailedError(
            f"{job} failed during {first.phase} on worker rank {first.rank}: {first.summary}. "
            f"Fix: {_fix_for(first.summary)}. Not retried (it would fail again); traceback: {report}"
        ) from None
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {name} finished without a checkpoint; see {result.path}")
    best = result.get_best_checkpoint(score_key, mode) or result.checkpoint
    fs = result.checkpoint.filesystem
    best_checkpoints = {}
    for key in metric_keys:
        path = f"{result.path}/best-{key}"
        if fs.get_file_info(path).type.name == "Directory":
            best_checkpoints[key] = path
    best_path = best_checkpoints.get(score_key, best.path)
    if "://" in storage:
        # Remote storage (s3://, gs://): the driver exports and logs a local copy of the best checkpoint.
        local = WorkLayout(cfg.workdir).root / "checkpoints" / name / f"best-{score_key}"
        best_path = ray.train.Checkpoint(best_path, filesystem=fs).to_directory(str(local))
    return TrainOutcome(
        best_checkpoint=best_path,
        best_checkpoints=best_checkpoints,
        latest_checkpoint=result.checkpoint.path,
        metrics=dict(result.metrics or {}),
        run_name=name,
        storage_path=storage,
        stop=(_read_progress(fs, result.checkpoint.path) or {}).get("stop"),
    )


def _read_progress(fs: Any, checkpoint_path: str) -> dict[str, Any] | None:
    """The train state beside a checkpoint's weights (`progress.json`), on any Ray storage; None if absent."""
    import posixpath

    try:
        with fs.open_input_stream(posixpath.join(checkpoint_path, PROGRESS_FILE)) as stream:
            return json.loads(stream.read().decode("utf-8"))
    except (FileNotFoundError, OSError, ValueError):
        return None


def finished_run(
    cfg: PipelineConfig,
    *,
    name: str | None = None,
    max_epochs: int | None = None,
    validation_metrics: list[str] | None = None,
) -> TrainOutcome | None:
    """The outcome of run `name` (default: this config's pretraining run) when its latest checkpoint
    already holds the whole schedule (`max_epochs` reached or the stopping criterion met); None when
    there is no such run or work is left, i.e. when the run must be launched (and resumes).

    Lets an unchanged pipeline rerun skip starting a worker group that would have nothing to do.
    """
    import posixpath

    import pyarrow.fs

    storage = _storage(cfg)
    name = name or ray_run_name(cfg)
    max_epochs = cfg.train.max_epochs if max_epochs is None else max_epochs
    metrics_spec = validation_metrics or cfg.train.validation_metrics
    remote = "://" in storage
    fs, root = pyarrow.fs.FileSystem.from_uri(storage if remote else str(Path(storage).resolve()))

    def as_uri(path: str) -> str:  # pyarrow paths drop the scheme of remote storage
        return f"{storage.split('://')[0]}://{path}" if remote else path

    run_dir = posixpath.join(root, name)
    found = fs.get_file_info(pyarrow.fs.FileSelector(run_dir, allow_not_found=True))
    checkpoints = sorted(
        i.path for i in found if i.type == pyarrow.fs.FileType.Directory and i.base_name.startswith("checkpoint_")
    )
    if not checkpoints:
        return None
    progress = _read_progress(fs, checkpoints[-1])
    if progress is None:
        return None  # a checkpoint from before progress.json existed: let Ray Train resume it
    if not progress.get("stopped") and progress.get("epoch", 0) < max_epochs:
        return None
    score_key = metrics_spec[0].lstrip("_")
    best = {}
    for key in (m.lstrip("_") for m in metrics_spec):
        path = posixpath.join(run_dir, f"best-{key}")
        if fs.get_file_info(path).type == pyarrow.fs.FileType.Directory:
            best[key] = as_uri(path)
    latest = as_uri(checkpoints[-1])
    best_path = best.get(score_key, latest)
    if remote:
        import ray.train

        local = WorkLayout(cfg.workdir).root / "checkpoints" / name / f"best-{score_key}"
        best_path = ray.train.Checkpoint(best_path).to_directory(str(local))
    logger.info(
        "Ray Train run %s already finished (epoch %d of %d, stopped=%s): resumed with nothing left to train",
        name,
        progress.get("epoch", 0),
        max_epochs,
        bool(progress.get("stopped")),
    )
    return TrainOutcome(
        best_checkpoint=best_path,
        best_checkpoints=best,
        latest_checkpoint=latest,
        metrics=dict(progress.get("last_metrics") or {}),
        run_name=name,
        storage_path=storage,
        stop=progress.get("stop"),
    )
