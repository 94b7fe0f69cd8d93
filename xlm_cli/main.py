"""`xlm` command line: run the pipeline, inspect configs and models, export, import and evaluate models.

Embedded defaults are set here, before Prefect is imported: a project-local Prefect home with
its SQLite database (ephemeral API) unless PREFECT_API_URL is set; the MLflow store lives in the
experiment's work directory unless MLFLOW_TRACKING_URI is set; Ray starts locally unless
`scaling.ray_address` is configured.

Bad input (a missing or malformed config, an unknown key, a damaged checkpoint, an unreadable text
file) is reported in one line on stderr naming the file and the fix, with exit status 2; `--debug`
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

__all__ = ["main"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Commands whose ValueError / OSError is bad input (one line, exit 2); for `run` only config errors
# are: a failure inside the pipeline keeps its traceback.
_INPUT_COMMANDS = frozenset({"config", "model", "export", "import", "evaluate", "predict"})
EXIT_BAD_INPUT = 2


class UsageError(ValueError):
    """A command's arguments cannot work as given; the message says what to pass instead."""


def _project_home() -> Path:
    """The repository root when run from a checkout, else the current directory."""
    return PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").exists() else Path.cwd()


def set_embedded_defaults() -> None:
    env = os.environ
    if not env.get("PREFECT_API_URL"):
        env.setdefault("PREFECT_HOME", str(_project_home() / ".prefect"))
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    env.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "xlm_core")
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("RAY_AUTH_MODE", "disabled")
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _cmd_run(args: argparse.Namespace) -> int:
    from xlm_core.config import load_config, parse_overrides

    overrides = parse_overrides(args.set)
    cfg = load_config(args.config, overrides)  # fail fast, before any server starts
    print(f"[xlm] experiment {cfg.experiment.name}: work directory {cfg.workdir}")
    print(f"[xlm] Prefect: {os.environ.get('PREFECT_API_URL') or 'ephemeral API, home ' + os.environ['PREFECT_HOME']}")
    print(f"[xlm] MLflow: {cfg.tracking_uri}")
    from flows.pipeline import xlm_pipeline
    from tasks.console import install_console_filters

    install_console_filters()
    if not os.environ.get("PREFECT_API_URL"):
        print("[xlm] starting the temporary Prefect API server (about a minute on a 2-core machine)...", flush=True)
    summary = xlm_pipeline(str(Path(args.config)), overrides)
    print(_summary_text(summary))
    return 0


def _summary_text(summary: dict) -> str:
    from xlm_core.evaluation.report import evidence_lines

    lines = ["", "[xlm] pipeline finished"]
    lines.append(f"  Prefect flow run : {summary['prefect_flow_run_id']}")
    home = os.environ.get("PREFECT_HOME", "~/.prefect")
    if not os.environ.get("PREFECT_API_URL"):
        lines.append(
            f"    see it in the UI: PREFECT_HOME={home} .venv/bin/prefect server start  "
            "(then open http://127.0.0.1:4200/runs)"
        )
    lines.append(
        f"  MLflow runs      : pipeline {summary['mlflow_pipeline_run_id']}, "
        f"training {summary['mlflow_training_run_id']}"
    )
    uri = summary["mlflow_tracking_uri"]
    if uri.startswith("sqlite:"):
        artifacts = Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts"
        lines.append(
            f"    dashboard: .venv/bin/mlflow ui --backend-store-uri {uri} "
            f"--default-artifact-root {artifacts} --host 127.0.0.1 --port 5000"
        )
    lines.append(
        f"  Export           : {summary['export_dir']} (transformers max |Δ logits| "
        f"{summary['max_abs_logit_diff']:.2e})"
    )
    for key, value in summary.get("metrics", {}).items():
        if key.startswith("valid_") and key.endswith(("_ppl", "_retrieval_p1", "_tlm_context_gain")):
            lines.append(f"    {key} = {value}")
    if summary.get("training_resumed") == "finished":
        lines.append("    (training had already finished: reported from its checkpoints, no workers started)")
    if summary.get("xnli_export_dir"):
        lines.append(f"  XNLI classifier  : {summary['xnli_export_dir']} (MLflow run {summary['mlflow_xnli_run_id']})")
        for key, value in summary.get("xnli_accuracy", {}).items():
            if key.startswith(("xnli_valid_", "xnli_test_")) and "avg" in key:
                lines.append(f"    {key} = {value}")
    learned = evidence_lines(summary.get("learned") or {})
    if learned:
        lines.append("  What the model learned (held-out valid data):")
        lines += [f"    {line}" for line in learned]
    lines.append(f"  Summary file     : {summary['summary_file']}")
    return "\n".join(lines)


def _cmd_config(args: argparse.Namespace) -> int:
    from xlm_core.config import load_config, to_dict

    cfg = load_config(args.config, args.set)
    print(json.dumps(to_dict(cfg), indent=2))
    return 0


def _cmd_model_info(args: argparse.Namespace) -> int:
    from xlm_core.config import load_config
    from xlm_core.model import XLMArchitecture, count_parameters

    cfg = load_config(args.config, args.set)
    arch = XLMArchitecture.from_config(
        cfg.model, vocab_size=args.vocab_size or _preset_vocab(cfg), n_langs=len(cfg.data.langs)
    )
    info = arch.to_dict() | {
        "causal": cfg.causal,
        "ffn_dim": 4 * arch.emb_dim,
        "num_parameters": count_parameters(arch),
    }
    for key, value in info.items():
        print(f"{key:>24}: {value}")
    print(f"{'parameters':>24}: {info['num_parameters'] / 1e6:.1f}M")
    return 0


def _preset_vocab(cfg: object) -> int:
    bpe = cfg.bpe  # type: ignore[attr-defined]
    if bpe.max_vocab > 0:
        return int(bpe.max_vocab)
    raise UsageError("the vocabulary size comes from the data: pass --vocab-size N (or set bpe.max_vocab)")


def _cmd_export(args: argparse.Namespace) -> int:
    from xlm_core.export.from_checkpoint import export_checkpoint

    if args.source.startswith("runs:/"):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="xlm-export-") as tmp:
            checkpoint_dir = _download_run_artifact(args.source, args.tracking_uri, Path(tmp))
            out = export_checkpoint(checkpoint_dir, args.out_dir)
    else:
        out = export_checkpoint(args.source, args.out_dir)
    print(f"[xlm] exported {args.source} -> {out}")
    return 0


def _download_run_artifact(source: str, tracking_uri: str | None, dest: Path) -> Path:
    """Download `runs:/<run_id>[/<artifact_path>]` (default artifact path `best_checkpoint`) into `dest`."""
    run_id, _, artifact_path = source.removeprefix("runs:/").strip("/").partition("/")
    if not run_id:
        raise UsageError(f"{source!r} names no run; use runs:/<run_id>[/<artifact_path>]")
    tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        raise UsageError("a runs:/ source needs --tracking-uri (or MLFLOW_TRACKING_URI)")
    import mlflow

    uri = f"runs:/{run_id}/{artifact_path or 'best_checkpoint'}"
    print(f"[xlm] downloading {uri} from {tracking_uri}")
    local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest), tracking_uri=tracking_uri)
    return Path(local)


def _cmd_import(args: argparse.Namespace) -> int:
    from xlm_core.export.importer import import_model

    out = import_model(
        args.source,
        args.out_dir,
        codes_path=args.codes,
        causal=args.causal,
        trust_pickle=args.trust_pickle,
        do_lowercase_and_remove_accent=args.lowercase,
    )
    print(f"[xlm] imported {args.source} -> {out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    if args.config is not None:
        return _evaluate_checkpoint(args)
    if args.model is None or args.text_file is None or args.lang is None:
        raise UsageError(
            "pass MODEL TEXT_FILE --lang LANG (a text file), or --config CONFIG [--checkpoint DIR] (the "
            "configured valid/test sets)"
        )
    from xlm_core.evaluation.text import evaluate_text
    from xlm_core.export.importer import load_pretrained

    model, _, meta = load_pretrained(args.model, trust_pickle=args.trust_pickle)
    codes = args.codes or meta["codes_path"]
    if codes is None:
        raise UsageError(f"{args.model} carries no BPE codes; pass --codes PATH")
    lowercase = meta["per_lang_lowercase"].get(args.lang, meta["do_lowercase_and_remove_accent"])
    result = evaluate_text(
        model,
        args.text_file,
        lang=args.lang,
        words=meta["words"],
        codes_path=codes,
        lang2id=meta["lang2id"],
        lowercase=True if lowercase is None else lowercase,
        objective=args.objective or ("clm" if meta["causal"] else "mlm"),
        batch_size=args.batch_size,
    )
    print(f"perplexity: {result.perplexity:.4f}")
    print(f"accuracy: {result.accuracy:.2f}")
    print(f"predicted_tokens: {result.num_pred}")
    print(f"[xlm] {result.summary()}")
    return 0


def _evaluate_checkpoint(args: argparse.Namespace) -> int:
    """The original's --eval_only: a pretraining checkpoint on the config's valid and test sets."""
    if args.model is not None or args.text_file is not None:
        raise UsageError("--config evaluates the configured valid/test sets: pass --checkpoint DIR, not a text file")
    import torch

    from xlm_core.config import load_config
    from xlm_core.train.evaluate import evaluate_checkpoint
    from xlm_core.train.ray_launcher import best_pretraining_checkpoint

    cfg = load_config(args.config, args.set)
    checkpoint = args.checkpoint or best_pretraining_checkpoint(cfg)
    if checkpoint is None:
        metric = cfg.train.validation_metrics[0].lstrip("_")
        raise UsageError(
            f"no best-{metric} checkpoint of this config's pretraining run in its Ray storage; pass --checkpoint DIR"
        )
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    print(f"[xlm] evaluating {checkpoint} on the valid and test sets of {cfg.workdir} ({device})")
    scores = evaluate_checkpoint(cfg, checkpoint, device=device)
    for key, value in scores.items():
        print(f"{key} -> {value:.6f}")
    print("__log__:" + json.dumps(scores, sort_keys=True))  # the original's machine-readable line
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    """Fill-mask with the language id set (what `pipeline("fill-mask")` cannot do on multilingual models)."""
    from xlm_core.evaluation.fill_mask import fill_mask
    from xlm_core.export.importer import load_pretrained

    model, _, meta = load_pretrained(args.model, trust_pickle=args.trust_pickle)
    if meta["causal"]:
        raise UsageError(f"{args.model} is a causal (CLM) model; fill-mask needs an MLM model")
    codes = args.codes or meta["codes_path"]
    if codes is None:
        raise UsageError(f"{args.model} carries no BPE codes; pass --codes PATH")
    lowercase = meta["per_lang_lowercase"].get(args.lang, meta["do_lowercase_and_remove_accent"])
    predictions = fill_mask(
        model,
        args.text,
        lang=args.lang,
        words=meta["words"],
        codes_path=codes,
        lang2id=meta["lang2id"],
        lowercase=True if lowercase is None else lowercase,
        top_k=args.top_k,
    )
    for number, prediction in enumerate(predictions, 1):
        print(f"mask {number} (position {prediction.position}), language {args.lang}:")
        for rank, (token, prob) in enumerate(zip(prediction.tokens, prediction.probs, strict=True), 1):
            print(f"  {rank:>2}. {token:<20} {prob:.4f}")
    return 0


def _add_predict_parser(sub: argparse._SubParsersAction, debug: argparse.ArgumentParser) -> None:
    predict = sub.add_parser(
        "predict", parents=[debug], help="fill-mask: the top-k tokens at each <mask>, with the language id set"
    )
    predict.add_argument("model", help="export directory, training checkpoint directory or original .pth")
    predict.add_argument("text", help='raw text with <mask> (or <special1>), e.g. "le chat est sur la <mask> ."')
    predict.add_argument("--lang", required=True, help="language of the text (its id is passed as langs)")
    predict.add_argument("--top-k", type=int, default=5, help="candidates per mask")
    predict.add_argument("--codes", default=None, help="fastBPE codes (needed for a .pth)")
    predict.add_argument("--trust-pickle", action="store_true", help="as for `xlm import`")
    predict.set_defaults(func=_cmd_predict)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlm", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (and debug logging)")
    sub = parser.add_subparsers(dest="command", required=True)
    # `--debug` is also accepted after the command (`xlm export --debug ...`); SUPPRESS keeps the top-level value.
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("config", help="experiment YAML file or preset name (configs/presets/*.yaml)")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="SECTION.KEY=VALUE",
            help="override a config value (repeatable), e.g. --set model.emb_dim=512",
        )

    run = sub.add_parser("run", parents=[debug], help="run the whole pipeline as a Prefect flow")
    with_config(run)
    run.set_defaults(func=_cmd_run)

    show = sub.add_parser("config", parents=[debug], help="print the validated, resolved config")
    with_config(show)
    show.set_defaults(func=_cmd_config)

    model = sub.add_parser("model", parents=[debug], help="model utilities")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    info = model_sub.add_parser("info", parents=[debug], help="shapes and parameter count (no weights allocated)")
    with_config(info)
    info.add_argument("--vocab-size", type=int, default=None, help="vocabulary size (default: bpe.max_vocab)")
    info.set_defaults(func=_cmd_model_info)

    export = sub.add_parser("export", parents=[debug], help="export a training checkpoint to a transformers directory")
    export.add_argument(
        "source",
        help="checkpoint directory (state.pt + config.json), or an MLflow run: runs:/<run_id>[/<artifact_path>] "
        "(default artifact path best_checkpoint)",
    )
    export.add_argument("out_dir", help="output directory")
    export.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    export.set_defaults(func=_cmd_export)

    imp = sub.add_parser("import", parents=[debug], help="import an original XLM .pth or a transformers XLM directory")
    imp.add_argument("source", help="original XLM .pth file, or a transformers XLM directory")
    imp.add_argument("out_dir", help="output directory (a transformers export)")
    imp.add_argument("--codes", default=None, help="fastBPE codes file (required for .pth; default merges.txt)")
    imp.add_argument(
        "--causal",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="causal attention (default: CLM-only training per params, or config.json; hub xlm-clm-* need --causal)",
    )
    imp.add_argument(
        "--lowercase",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="tokenizer lowercase+accent removal (default: tokenizer_config.json, else on)",
    )
    imp.add_argument(
        "--trust-pickle",
        action="store_true",
        help="load a .pth with weights_only=False (runs pickled code: trusted files only)",
    )
    imp.set_defaults(func=_cmd_import)

    evaluate = sub.add_parser(
        "evaluate",
        parents=[debug],
        help="perplexity and accuracy on a raw text file (MODEL TEXT_FILE --lang L), or of a pretraining "
        "checkpoint on the configured valid/test sets (--config CONFIG [--checkpoint DIR])",
    )
    evaluate.add_argument("model", nargs="?", help="training checkpoint directory, export directory or original .pth")
    evaluate.add_argument("text_file", nargs="?", help="raw UTF-8 text, one sentence per line")
    evaluate.add_argument("--lang", default=None, help="language of the text (e.g. en); required with a text file")
    evaluate.add_argument(
        "--config",
        default=None,
        help="experiment YAML or preset: evaluate a checkpoint on its valid and test sets (the original's --eval_only)",
    )
    evaluate.add_argument(
        "--checkpoint",
        default=None,
        help="with --config: a pretraining checkpoint directory (default: the best one of the config's Ray run)",
    )
    evaluate.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="with --config: override a value"
    )
    evaluate.add_argument("--device", default=None, help="with --config: cpu or cuda (default: cuda if available)")
    evaluate.add_argument(
        "--objective", choices=("clm", "mlm"), default=None, help="default: clm for causal models, else mlm"
    )
    evaluate.add_argument("--batch-size", type=int, default=32, help="sentences per batch")
    evaluate.add_argument("--codes", default=None, help="fastBPE codes (needed for a .pth)")
    evaluate.add_argument("--trust-pickle", action="store_true", help="as for `xlm import`")
    evaluate.set_defaults(func=_cmd_evaluate)
    _add_predict_parser(sub, debug)
    return parser


def bad_input_message(command: str, error: BaseException) -> str | None:
    """The one-line report of `error` if it is about the command's input, else None (a traceback)."""
    from xlm_core.config import ConfigError
    from xlm_core.train.ray_launcher import TrainingFailedError

    if isinstance(error, ConfigError):
        text = str(error)
    elif command == "run" and isinstance(error, (TrainingFailedError, ValueError)):
        text = str(error)  # names the stage, file or setting and the fix (Prefect's logs keep the traceback)
    elif command not in _INPUT_COMMANDS or not isinstance(error, (ValueError, OSError)):
        return None
    elif isinstance(error, OSError) and error.filename:
        text = f"{error.filename}: {error.strerror or error}; check the path"
    else:
        text = str(error) or type(error).__name__
    return f"xlm {command}: " + "; ".join(line.strip() for line in text.splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    set_embedded_defaults()
    args = build_parser().parse_args(argv)
    if args.command != "run":  # `run` leaves the console to Prefect, whose lines name their run
        logging.basicConfig(
            level=logging.DEBUG if args.verbose or args.debug else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    for noisy in ("httpx", "httpcore", "urllib3", "alembic", "mlflow.store"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except Exception as error:
        message = bad_input_message(args.command, error)
        if message is None or args.debug:
            raise
        print(message, file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
