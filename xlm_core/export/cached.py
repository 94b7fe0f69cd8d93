"""Export and its transformers check as content-addressed stages (`xlm_core.stage_cache`).

Both are deterministic functions of the checkpoint's files and this code, so an unchanged pipeline
rerun reuses the previous export instead of rewriting it; a new best checkpoint exports afresh.
"""

from __future__ import annotations

from pathlib import Path

from xlm_core.export.from_checkpoint import export_checkpoint, verify_checkpoint_export
from xlm_core.stage_cache import Stage, run_stage

__all__ = ["cached_export", "cached_verify", "export_stage", "verify_stage"]

_CODE = ("xlm_core.export.cached", "xlm_core.export.from_checkpoint", "xlm_core.export.hf", "xlm_core.export.card")


def export_stage(checkpoint_dir: str | Path, out_dir: str | Path, *, root: Path, code: tuple[str, ...] = ()) -> Stage:
    """The export of `checkpoint_dir` to `out_dir`; `code`: modules besides the export package's that shape it."""
    inputs, outputs = [Path(checkpoint_dir)], [Path(out_dir)]
    return Stage("export", Path(out_dir).name, root, inputs=inputs, outputs=outputs, code=(*_CODE, *code))


def cached_export(checkpoint_dir: str | Path, out_dir: str | Path, *, root: Path) -> str:
    """`export_checkpoint`, reused when the checkpoint and the export directory are unchanged."""
    stage = export_stage(checkpoint_dir, out_dir, root=root)
    return run_stage(stage, lambda: str(export_checkpoint(checkpoint_dir, out_dir)))


def verify_stage(export_dir: str | Path, checkpoint_dir: str | Path, *, lang: str | None, root: Path) -> Stage:
    return Stage(
        "verify-export",
        Path(export_dir).name,
        root,
        params={"lang": lang},
        inputs=[Path(export_dir), Path(checkpoint_dir)],
        code=_CODE,
        tools=("transformers", "torch"),
    )


def cached_verify(export_dir: str | Path, checkpoint_dir: str | Path, *, lang: str | None, root: Path) -> float:
    """`verify_checkpoint_export` (max |Δ logits|), reused for an unchanged export of an unchanged checkpoint."""
    stage = verify_stage(export_dir, checkpoint_dir, lang=lang, root=root)
    return run_stage(stage, lambda: verify_checkpoint_export(export_dir, checkpoint_dir, lang=lang))
