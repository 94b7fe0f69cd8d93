"""Import pretrained XLM models: original `.pth` checkpoints and Hugging Face XLM directories.

Two sources (docs/transformers-compatibility.md, "Importing"):

- an original XLM `.pth` (`torch.save` of `model`/`encoder`, `params`, `dico_id2word`, `dico_word2id`,
  `dico_counts`). It is unpickled with `weights_only=True` plus an allow-list of the numpy globals
  that `params` needs; nothing else can run unless the caller passes `trust_pickle=True`;
- a transformers XLM directory (config.json, model.safetensors or pytorch_model.bin, vocab.json,
  merges.txt).

`import_model` writes a project export (loadable by transformers and by `load_lm`); `load_pretrained`
turns any of these sources, an export or a training checkpoint directory into the project's
`XLMWithLMHeadModel` plus what training or evaluation needs to continue from it (dictionary,
BPE codes, languages, lowercasing, causal flag).
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from xlm_core.checkpoint import error_summary
from xlm_core.export.from_checkpoint import model_from_checkpoint, read_words
from xlm_core.export.hf import (
    SPECIAL_WORDS,
    export_lm,
    hf_config,
    hf_meta,
    model_from_hf_state,
    words_from_vocab,
)
from xlm_core.model import XLMArchitecture, XLMWithLMHeadModel

__all__ = ["ImportedModel", "import_model", "load_original", "load_pretrained", "read_hf_dir", "read_original"]

logger = logging.getLogger(__name__)

_DDP_PREFIX = "module."
_TIED_KEY = "pred_layer.proj.weight"


@dataclass
class ImportedModel:
    """A model read from an external source, with everything needed to export or train it further."""

    model: XLMWithLMHeadModel
    arch: XLMArchitecture
    words: list[str]
    lang2id: dict[str, int]
    causal: bool
    do_lowercase_and_remove_accent: bool | None
    codes_path: Path | None
    source: str


def _numpy_safe_globals() -> list[Any]:
    """The numpy objects an original `params` dict pickles (arrays, scalars, dtypes), under old and new names."""
    multiarray = (getattr(np, "_core", None) or np.core).multiarray  # numpy 2.x / 1.x
    allowed: list[Any] = [np.ndarray, np.dtype]
    # numpy 1.x pickles name `numpy.core.multiarray.*`, numpy 2.x `numpy._core.multiarray.*`.
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(multiarray._reconstruct, f"{module}._reconstruct"), (multiarray.scalar, f"{module}.scalar")]
    allowed += [getattr(np.dtypes, name) for name in np.dtypes.__all__]
    return allowed


def load_original(path: str | Path, *, trust_pickle: bool = False) -> dict[str, Any]:
    """Read an original XLM `.pth` on CPU without executing pickled code (unless `trust_pickle`).

    Raises:
        ValueError: the file needs globals outside the numpy allow-list; names them and says to pass
            `--trust-pickle` (only for files from a trusted source).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist; pass an original XLM .pth file or a transformers XLM directory")
    damaged = f"{path}: not a readable PyTorch file, truncated or corrupt"
    if trust_pickle:
        logger.warning("loading %s with weights_only=False: pickled code in it can run", path)
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as e:
            raise ValueError(f"{damaged} ({error_summary(e)}); pass an intact original XLM .pth") from e
    else:
        try:
            with torch.serialization.safe_globals(_numpy_safe_globals()):
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError) as e:
            raise ValueError(f"{damaged} ({error_summary(e)}); pass an intact original XLM .pth") from e
        except pickle.UnpicklingError as e:
            try:
                unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
            except Exception:  # the summary is best effort; the original error is chained below
                unsafe = []
            allowed = {name for item in _numpy_safe_globals() if isinstance(item, tuple) for name in item[1:]}
            unsafe = [name for name in unsafe if name not in allowed and not name.startswith("numpy.dtypes.")]
            raise ValueError(
                f"{path}: refusing to unpickle objects outside the safe allow-list (tensors, numpy arrays and "
                f"scalars){': ' + ', '.join(unsafe) if unsafe else ''}. If you trust the file's source, pass "
                "--trust-pickle (trust_pickle=True), which runs torch.load with weights_only=False"
            ) from e
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path}: expected a dict saved by XLM's trainer, got {type(checkpoint).__name__}")
    return dict(checkpoint)


def _strip_ddp(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key.removeprefix(_DDP_PREFIX): value for key, value in state.items()}


def _refuse_unrepresentable(checkpoint: Mapping[str, Any], state: Mapping[str, Any], source: str) -> None:
    if "decoder" in checkpoint:
        raise ValueError(
            f"{source}: an encoder-decoder (MT) checkpoint (keys 'encoder'/'decoder'); transformers' XLM "
            "classes and this project hold encoders only: import a pretrained LM checkpoint (key 'model')"
        )
    decoder_keys = [k for k in state if "encoder_attn" in k or k.startswith("layer_norm15")]
    if decoder_keys:
        raise ValueError(f"{source}: decoder layers ({decoder_keys[0]}, ...) cannot be imported (encoders only)")
    if any(k.startswith("memories.") for k in state):
        raise ValueError(f"{source}: product-key memory layers (memories.*) are not supported by transformers' XLM")
    if any(k.startswith("pred_layer.proj.head") or k.startswith("pred_layer.proj.tail") for k in state):
        raise ValueError(
            f"{source}: adaptive-softmax (asm) output layer; XLMWithLMHeadModel cannot run it "
            "(see docs/transformers-compatibility.md, 'What cannot be exported')"
        )


def _lang2id_from_params(params: Mapping[str, Any], n_langs: int, source: str) -> dict[str, int]:
    if params.get("lang2id"):
        lang2id = {str(lang): int(i) for lang, i in params["lang2id"].items()}
    elif params.get("id2lang"):
        lang2id = {str(lang): int(i) for i, lang in params["id2lang"].items()}
    elif n_langs == 1:
        lang2id = {str(params.get("lgs") or "en"): 0}
    else:
        raise ValueError(f"{source}: params has n_langs={n_langs} but neither lang2id nor id2lang")
    if sorted(lang2id.values()) != list(range(n_langs)):
        raise ValueError(f"{source}: params lang2id {lang2id} does not map onto 0..n_langs-1 (n_langs={n_langs})")
    return lang2id


def read_original(
    checkpoint: Mapping[str, Any], *, causal: bool | None = None, source: str = "<checkpoint>"
) -> ImportedModel:
    """Convert a loaded original XLM checkpoint dict into the project's model.

    Key mapping: docs/transformers-compatibility.md, "Parameter names and state-dict keys".

    `causal` defaults to `bool(clm_steps) and not mlm_steps` from `params`.
    """
    state = checkpoint.get("model", checkpoint.get("encoder"))
    if not isinstance(state, Mapping):
        raise ValueError(
            f"{source}: no 'model' (or 'encoder') state dict (keys: {sorted(checkpoint)}); "
            "is this an original XLM checkpoint?"
        )
    for key in ("params", "dico_id2word"):
        if key not in checkpoint:
            raise ValueError(f"{source}: key {key!r} is missing; an original XLM checkpoint has params and dico_*")
    state = _strip_ddp(state)
    _refuse_unrepresentable(checkpoint, state, source)
    params: Mapping[str, Any] = checkpoint["params"]
    if bool(params.get("asm", False)):
        raise ValueError(f"{source}: params.asm is true (adaptive softmax); XLMWithLMHeadModel cannot run it")
    if any(key.startswith("memories.") for key in state) or params.get("use_memory"):
        raise ValueError(f"{source}: product-key memory (params.use_memory) is not supported by transformers' XLM")

    id2word = {int(i): str(w) for i, w in checkpoint["dico_id2word"].items()}
    if sorted(id2word) != list(range(len(id2word))):
        raise ValueError(f"{source}: dico_id2word ids are not contiguous from 0")
    words = [id2word[i] for i in range(len(id2word))]
    if tuple(words[: len(SPECIAL_WORDS)]) != SPECIAL_WORDS:
        raise ValueError(f"{source}: dictionary ids 0-13 must be the XLM specials, got {words[:14]}")
    if "dico_word2id" in checkpoint and len(checkpoint["dico_word2id"]) != len(words):
        raise ValueError(
            f"{source}: dico_word2id has {len(checkpoint['dico_word2id'])} entries, dico_id2word {len(words)}"
        )
    for key in ("embeddings.weight", "position_embeddings.weight", "pred_layer.proj.bias"):
        if key not in state:
            raise ValueError(f"{source}: state dict has no {key!r}; expected an XLM encoder with its LM head")
    if state["embeddings.weight"].shape[0] != len(words):
        raise ValueError(
            f"{source}: embeddings have {state['embeddings.weight'].shape[0]} rows "
            f"but the dictionary has {len(words)} words"
        )

    n_langs = int(params.get("n_langs", 1))
    lang2id = _lang2id_from_params(params, n_langs, source)
    tied = bool(params.get("share_inout_emb", True))
    arch = XLMArchitecture(
        vocab_size=len(words),
        emb_dim=int(params["emb_dim"]),
        n_layers=int(params["n_layers"]),
        n_heads=int(params["n_heads"]),
        dropout=float(params.get("dropout", 0.0)),
        attention_dropout=float(params.get("attention_dropout", 0.0)),
        # XLM's train.py defaults (used when an old params dump lacks the flag).
        gelu_activation=bool(params.get("gelu_activation", False)),
        sinusoidal_embeddings=bool(params.get("sinusoidal_embeddings", False)),
        n_langs=n_langs,
        use_lang_emb=bool(params.get("use_lang_emb", True)),
        max_position_embeddings=int(state["position_embeddings.weight"].shape[0]),
        tie_word_embeddings=tied,
        pad_index=int(params.get("pad_index", 2)),
    )
    if causal is None:
        causal = bool(params.get("clm_steps")) and not params.get("mlm_steps")
    tensors = {key if key.startswith("pred_layer.") else f"transformer.{key}": value for key, value in state.items()}
    if tied and _TIED_KEY not in tensors:
        tensors[_TIED_KEY] = tensors["transformer.embeddings.weight"]
    config = hf_config(arch, architectures=["XLMWithLMHeadModel"], lang2id=lang2id, causal=causal)
    model, _ = model_from_hf_state(config, tensors, source=source)
    logger.info(
        "read original XLM checkpoint %s: %d layers x %d, %d words, langs %s, causal=%s",
        source,
        arch.n_layers,
        arch.emb_dim,
        arch.vocab_size,
        sorted(lang2id, key=lang2id.__getitem__),
        causal,
    )
    return ImportedModel(model, arch, words, lang2id, causal, None, None, source)


def _read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    if (directory / "model.safetensors").is_file():
        tensors = load_file(str(directory / "model.safetensors"))
    elif (directory / "pytorch_model.bin").is_file():
        tensors = torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise ValueError(f"{directory}: neither model.safetensors nor pytorch_model.bin; not a transformers export")
    # Older transformers saved `position_ids` as a persistent buffer.
    tensors = {k: v for k, v in tensors.items() if not k.endswith("position_ids")}
    if not any(key.startswith("transformer.") for key in tensors):
        # An `XLMModel` save: no prefix.
        tensors = {k if k.startswith("pred_layer.") else f"transformer.{k}": v for k, v in tensors.items()}
    if "pred_layer.proj.bias" not in tensors:
        raise ValueError(
            f"{directory}: no LM head (pred_layer.proj.bias); export an XLMWithLMHeadModel, not a bare XLMModel"
        )
    return tensors


def read_hf_dir(directory: str | Path, *, causal: bool | None = None) -> ImportedModel:
    """Read a transformers XLM directory (ours or the hub's) into the project's model.

    `causal` overrides config.json: hub CLM models (xlm-clm-*) wrongly say `"causal": false`.
    """
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{directory}: config.json is missing; pass a transformers XLM directory or a .pth file")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    tokenizer_config: dict[str, Any] = {}
    if (directory / "tokenizer_config.json").is_file():
        tokenizer_config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    meta = hf_meta(config)
    if not meta["lang2id"]:
        meta = hf_meta({**config, **{k: tokenizer_config[k] for k in ("lang2id", "id2lang") if k in tokenizer_config}})
    if causal is None:
        causal = meta["causal"]
        if not causal and "clm" in directory.name:
            logger.warning("%s looks like a CLM model but config.json says causal=false; pass --causal", directory)
    config = {**config, "causal": causal}
    model, arch = model_from_hf_state(config, _read_hf_weights(directory), source=directory)
    vocab_path = directory / "vocab.json"
    if not vocab_path.is_file():
        raise ValueError(f"{directory}: vocab.json is missing; the tokenizer files are needed to import a model")
    words = words_from_vocab(json.loads(vocab_path.read_text(encoding="utf-8")))
    if len(words) != arch.vocab_size:
        raise ValueError(f"{vocab_path}: {len(words)} tokens but config.json vocab_size={arch.vocab_size}")
    lang2id = meta["lang2id"] or {"en": 0}
    merges = directory / "merges.txt"
    lowercase = tokenizer_config.get("do_lowercase_and_remove_accent")
    return ImportedModel(
        model,
        arch,
        words,
        lang2id,
        causal,
        None if lowercase is None else bool(lowercase),
        merges if merges.is_file() else None,
        str(directory),
    )


def _read_source(
    source: str | Path, *, causal: bool | None, trust_pickle: bool, codes_path: str | Path | None
) -> ImportedModel:
    path = Path(source)
    if path.is_dir():
        imported = read_hf_dir(path, causal=causal)
    elif path.is_file():
        imported = read_original(load_original(path, trust_pickle=trust_pickle), causal=causal, source=str(path))
    else:
        raise ValueError(f"{source} does not exist; pass an original XLM .pth file or a transformers XLM directory")
    if codes_path is not None:
        imported.codes_path = Path(codes_path)
    return imported


def import_model(
    source: str | Path,
    out_dir: str | Path,
    *,
    codes_path: str | Path | None = None,
    causal: bool | None = None,
    trust_pickle: bool = False,
    do_lowercase_and_remove_accent: bool | None = None,
    bos_token: str = "</s>",
) -> Path:
    """Import an original XLM `.pth` or a transformers XLM directory and write a project export.

    Args:
        source: `.pth` file or transformers directory.
        out_dir: export destination (see `export_lm`).
        codes_path: fastBPE codes the model was trained with; required for `.pth` (it has none),
            default merges.txt for directories.
        causal: override the inferred causal flag (`bool(clm_steps) and not mlm_steps`, or config.json).
        trust_pickle: allow arbitrary pickled objects in a `.pth` (trusted files only).
        do_lowercase_and_remove_accent: tokenizer flag; default from tokenizer_config.json, else True.
        bos_token: "</s>" (XLM layout) or "<s>".

    Returns:
        The export directory.
    """
    imported = _read_source(source, causal=causal, trust_pickle=trust_pickle, codes_path=codes_path)
    if imported.codes_path is None:
        raise ValueError(
            f"{source} carries no BPE codes: pass --codes PATH (codes_path=), the fastBPE codes file the model was "
            "trained with (e.g. codes_xnli_15 from the XLM README)"
        )
    if not imported.codes_path.is_file():
        raise ValueError(f"codes file {imported.codes_path} does not exist; pass the fastBPE codes with --codes")
    lowercase = do_lowercase_and_remove_accent
    if lowercase is None:
        lowercase = True if imported.do_lowercase_and_remove_accent is None else imported.do_lowercase_and_remove_accent
        if imported.do_lowercase_and_remove_accent is None:
            logger.warning("%s does not record lowercasing; assuming lowercase+accent removal (--no-lowercase)", source)
    return export_lm(
        imported.model,
        imported.arch,
        out_dir,
        words=imported.words,
        codes_path=imported.codes_path,
        lang2id=imported.lang2id,
        do_lowercase_and_remove_accent=lowercase,
        causal=imported.causal,
        bos_token=bos_token,
        card={
            "description": f"Imported from {imported.source}.",
            "extra": {"imported from": imported.source},
        },
    )


def load_pretrained(
    path: str | Path, *, causal: bool | None = None, trust_pickle: bool = False
) -> tuple[XLMWithLMHeadModel, XLMArchitecture, dict[str, Any]]:
    """Load a pretrained model to continue pretraining, fine-tune or evaluate it.

    `path` is an export or transformers XLM directory, a training checkpoint directory (state.pt),
    or an original XLM `.pth`.

    Returns:
        (model in eval mode on CPU, architecture, meta) with meta keys `causal`, `lang2id`,
        `id2lang`, `words` (dictionary in id order), `codes_path` (fastBPE codes or merges.txt; None
        for a `.pth`), `do_lowercase_and_remove_accent` (None when unknown), `per_lang_lowercase`,
        `format` ("export" | "checkpoint" | "original") and `source`.
    """
    path = Path(path)
    per_lang: dict[str, bool] = {}
    if path.is_dir() and (path / "state.pt").is_file():
        model, arch, _, cfg = model_from_checkpoint(path)
        lang2id = dict(cfg.lang2id)
        per_lang = {lang: cfg.tokenization.lowercase_for(lang) for lang in lang2id}
        imported = ImportedModel(
            model,
            arch,
            read_words(path / "dict.txt"),
            lang2id,
            cfg.causal if causal is None else causal,
            cfg.tokenization.lowercase_and_remove_accent,
            path / "codes",
            str(path),
        )
        kind = "checkpoint"
    else:
        imported = _read_source(path, causal=causal, trust_pickle=trust_pickle, codes_path=None)
        kind = "export" if path.is_dir() else "original"
    meta = {
        "causal": imported.causal,
        "lang2id": imported.lang2id,
        "id2lang": {i: lang for lang, i in imported.lang2id.items()},
        "words": imported.words,
        "codes_path": imported.codes_path,
        "do_lowercase_and_remove_accent": imported.do_lowercase_and_remove_accent,
        "per_lang_lowercase": per_lang,
        "format": kind,
        "source": imported.source,
    }
    return imported.model.eval(), imported.arch, meta
