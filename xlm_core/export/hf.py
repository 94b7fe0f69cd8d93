"""Export to (and re-import from) a Hugging Face `transformers` XLM directory.

The export directory loads with `XLMWithLMHeadModel.from_pretrained` / `XLMForSequenceClassification`,
`XLMTokenizer` / `AutoTokenizer` and `pipeline("fill-mask")` (contract: docs/transformers-compatibility.md).
It holds config.json, model.safetensors, vocab.json, merges.txt, tokenizer_config.json and README.md,
written into a temporary sibling directory and renamed into place only when complete.
transformers itself is not needed to export or to load back into the project's model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from xlm_core.export.card import render_model_card
from xlm_core.model import XLMArchitecture, XLMForSequenceClassification, XLMWithLMHeadModel

__all__ = [
    "SPECIAL_WORDS",
    "XNLI_LABELS",
    "export_classifier",
    "export_lm",
    "hf_config",
    "hf_meta",
    "load_lm",
    "model_from_hf_state",
    "verify_export",
    "vocab_from_words",
    "words_from_vocab",
]

logger = logging.getLogger(__name__)

# XLM dictionary ids 0-13 (docs/CONTRACTS.md); <special1> (5) is the mask.
SPECIAL_WORDS = ("<s>", "</s>", "<pad>", "<unk>", *(f"<special{i}>" for i in range(10)))
BOS_INDEX, EOS_INDEX, PAD_INDEX, UNK_INDEX, MASK_INDEX = 0, 1, 2, 3, 5
XNLI_LABELS = ("contradiction", "neutral", "entailment")
_WEIGHTS = "model.safetensors"
_TIED_KEY = "pred_layer.proj.weight"


def vocab_from_words(words: Sequence[str]) -> dict[str, int]:
    """vocab.json for `XLMTokenizer` from the dictionary words in id order.

    See docs/transformers-compatibility.md, "Tokenizer files".

    Specials keep their spelling; `xx@@` (word-internal BPE piece) -> "xx"; word-final `xx` -> "xx</w>".
    """
    if tuple(words[: len(SPECIAL_WORDS)]) != SPECIAL_WORDS:
        raise ValueError(f"words[0:14] must be the XLM specials {list(SPECIAL_WORDS)}, got {list(words[:14])}")
    vocab: dict[str, int] = {}
    for index, word in enumerate(words):
        if index < len(SPECIAL_WORDS):
            token = word
        elif word.endswith("@@"):
            token = word[:-2]
        else:
            token = word + "</w>"
        if token in vocab:
            raise ValueError(f"vocab.json collision: words {vocab[token]} and {index} both map to {token!r}")
        vocab[token] = index
    return vocab


def words_from_vocab(vocab: Mapping[str, int]) -> list[str]:
    """Dictionary words in id order from a transformers vocab.json (inverse of `vocab_from_words`).

    `"xx</w>"` -> word-final `xx`; other tokens above id 13 -> word-internal `xx@@`.
    """
    ids = sorted(vocab.values())
    if ids != list(range(len(vocab))):
        raise ValueError(f"vocab.json ids must be contiguous from 0 (got {len(vocab)} tokens, max id {ids[-1]})")
    words = [""] * len(vocab)
    for token, index in vocab.items():
        if index < len(SPECIAL_WORDS):
            words[index] = token
        elif token.endswith("</w>"):
            words[index] = token[: -len("</w>")]
        else:
            words[index] = token + "@@"
    if tuple(words[: len(SPECIAL_WORDS)]) != SPECIAL_WORDS:
        raise ValueError(f"vocab.json ids 0-13 must be the XLM specials {list(SPECIAL_WORDS)}, got {words[:14]}")
    return words


def hf_config(
    arch: XLMArchitecture,
    *,
    architectures: list[str],
    lang2id: Mapping[str, int],
    causal: bool,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Any]:
    """config.json contents for `XLMConfig` (docs/transformers-compatibility.md, "config.json")."""
    if sorted(lang2id.values()) != list(range(arch.n_langs)):
        raise ValueError(f"lang2id {dict(lang2id)} must map onto 0..n_langs-1 (n_langs={arch.n_langs})")
    return {
        "model_type": "xlm",
        "architectures": architectures,
        "vocab_size": arch.vocab_size,
        "emb_dim": arch.emb_dim,
        "n_layers": arch.n_layers,
        "n_heads": arch.n_heads,
        "dropout": arch.dropout,
        "attention_dropout": arch.attention_dropout,
        "gelu_activation": arch.gelu_activation,
        "sinusoidal_embeddings": arch.sinusoidal_embeddings,
        # Compat: `causal` is a config field in transformers (a per-call flag in XLM); hub CLM configs
        # wrongly say false, so it is always written explicitly.
        "causal": causal,
        "asm": False,
        "n_langs": arch.n_langs,
        "use_lang_emb": arch.use_lang_emb,
        "max_position_embeddings": arch.max_position_embeddings,
        "embed_init_std": arch.emb_dim**-0.5,
        "init_std": 0.02,
        "layer_norm_eps": arch.layer_norm_eps,
        "is_encoder": True,
        "tie_word_embeddings": arch.tie_word_embeddings,
        "bos_token_id": BOS_INDEX,
        "eos_token_id": EOS_INDEX,
        "pad_token_id": arch.pad_index,
        "unk_index": UNK_INDEX,
        "mask_index": MASK_INDEX,
        # Compat: generation-only fields; `generate()` appends mask_token_id (hub value 0) and fills
        # `langs` with lang_id.
        "mask_token_id": 0,
        "lang_id": lang2id.get("en", 0),
        "lang2id": dict(lang2id),
        "id2lang": {str(i): lang for lang, i in lang2id.items()},
        "summary_type": "first",
        "summary_use_proj": True,
        "summary_activation": None,
        "summary_proj_to_labels": True,
        "summary_first_dropout": arch.dropout,
        "start_n_top": 5,
        "end_n_top": 5,
        "dtype": str(dtype).removeprefix("torch."),
    }


def _tokenizer_config(
    lang2id: Mapping[str, int], *, do_lowercase_and_remove_accent: bool, bos_token: str, max_len: int
) -> dict[str, Any]:
    if bos_token not in ("</s>", "<s>"):
        raise ValueError(f"export.bos_token must be '</s>' or '<s>', got {bos_token!r}")
    special = {"content": "", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    return {
        "tokenizer_class": "XLMTokenizer",
        "do_lowercase_and_remove_accent": do_lowercase_and_remove_accent,
        "lang2id": dict(lang2id),
        "id2lang": {str(i): lang for lang, i in lang2id.items()},
        "model_max_length": max_len,
        # Compat: "</s>" reproduces XLM's `</s> w1 … wn </s>` training layout; transformers' default
        # is "<s>", a layout the model never saw (docs/transformers-compatibility.md, "Special tokens and
        # sequence layout").
        "bos_token": bos_token,
        "sep_token": "</s>",
        "cls_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "mask_token": "<special1>",
        "extra_special_tokens": list(SPECIAL_WORDS[4:]),
        "added_tokens_decoder": {
            str(i): {**special, "content": word, "special": True} for i, word in enumerate(SPECIAL_WORDS)
        },
    }


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_merges(codes_path: str | Path, dest: Path) -> None:
    codes = Path(codes_path).read_text(encoding="utf-8")
    if codes.startswith("#version"):
        raise ValueError(f"{codes_path}: a '#version' header would be read as a merge; pass the fastBPE codes file")
    # Compat: XLMTokenizer reads merges with split("\n")[:-1]; without a final newline the last merge is lost.
    if not codes.endswith("\n"):
        codes += "\n"
    dest.write_text(codes, encoding="utf-8")


def _state_dict_for_export(model: nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses shared storage: clone every tensor (tied weights are stored under both keys).
    return {key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()}


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Move the finished `tmp` onto `dest`; an existing export at `dest` is replaced."""
    if dest.exists():
        if not (dest / "config.json").exists():
            raise FileExistsError(f"{dest} exists and is not a model export; choose another output directory")
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
        logger.info("replaced the previous export at %s", dest)
    else:
        os.replace(tmp, dest)


def _export(out_dir: str | Path, write: Callable[[Path], None]) -> Path:
    dest = Path(out_dir).resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        _replace_dir(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _card_info(
    model: nn.Module,
    arch: XLMArchitecture,
    dest: Path,
    lang2id: Mapping[str, int],
    causal: bool,
    bos_token: str,
    card: dict | None,
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "model_name": dest.name,
        "languages": sorted(lang2id, key=lang2id.__getitem__),
        "lang2id": dict(lang2id),
        "causal": causal,
        "objectives": ["CLM"] if causal else ["MLM"],
        "architecture": arch.to_dict(),
        "num_parameters": sum(p.numel() for p in model.parameters()),  # tied weights once
        "bos_token": bos_token,
        "local_path": str(dest),
    }
    info.update(card or {})
    return info


def _write_common(
    tmp: Path,
    model: nn.Module,
    config: dict[str, Any],
    *,
    words: Sequence[str],
    codes_path: str | Path,
    tokenizer_config: dict[str, Any],
    card_info: dict[str, Any],
) -> None:
    vocab = vocab_from_words(words)
    if len(vocab) != config["vocab_size"]:
        raise ValueError(f"{len(vocab)} dictionary words but the model has vocab_size={config['vocab_size']}")
    _write_json(tmp / "config.json", config)
    save_file(_state_dict_for_export(model), str(tmp / _WEIGHTS), metadata={"format": "pt"})
    _write_json(tmp / "vocab.json", vocab)
    _write_merges(codes_path, tmp / "merges.txt")
    _write_json(tmp / "tokenizer_config.json", tokenizer_config)
    (tmp / "README.md").write_text(render_model_card(card_info), encoding="utf-8")


def export_lm(
    model: XLMWithLMHeadModel,
    arch: XLMArchitecture,
    out_dir: str | Path,
    *,
    words: Sequence[str],
    codes_path: str | Path,
    lang2id: Mapping[str, int],
    do_lowercase_and_remove_accent: bool,
    causal: bool,
    bos_token: str = "</s>",
    card: dict[str, Any] | None = None,
) -> Path:
    """Write a transformers `XLMWithLMHeadModel` directory (weights, config, tokenizer, model card).

    Args:
        model: the trained model (any device; weights are copied to CPU as they are).
        arch: its architecture.
        out_dir: destination; an existing export there is replaced atomically.
        words: dictionary words in id order, ids 0-13 the XLM specials.
        codes_path: the fastBPE codes file (written verbatim as merges.txt).
        lang2id: alphabetical language ids, as in training.
        do_lowercase_and_remove_accent: the tokenizer's normalisation flag (as used in preprocessing).
        causal: True for CLM-only models (written as config `causal`).
        bos_token: "</s>" (XLM training layout) or "<s>" (transformers default).
        card: extra model-card facts for `render_model_card` (data, hyperparameters, results, ...).

    Returns:
        The export directory.
    """
    dtype = next(model.parameters()).dtype
    config = hf_config(arch, architectures=["XLMWithLMHeadModel"], lang2id=lang2id, causal=causal, dtype=dtype)
    tok_config = _tokenizer_config(
        lang2id,
        do_lowercase_and_remove_accent=do_lowercase_and_remove_accent,
        bos_token=bos_token,
        max_len=arch.max_position_embeddings,
    )
    dest = Path(out_dir).resolve()
    info = _card_info(model, arch, dest, lang2id, causal, bos_token, card)
    path = _export(
        dest,
        lambda tmp: _write_common(
            tmp, model, config, words=words, codes_path=codes_path, tokenizer_config=tok_config, card_info=info
        ),
    )
    logger.info("exported %s (%d parameters) to %s", config["architectures"][0], info["num_parameters"], path)
    return path


def export_classifier(
    model: XLMForSequenceClassification,
    arch: XLMArchitecture,
    out_dir: str | Path,
    *,
    words: Sequence[str],
    codes_path: str | Path,
    lang2id: Mapping[str, int],
    do_lowercase_and_remove_accent: bool,
    labels: Sequence[str] = XNLI_LABELS,
    bos_token: str = "</s>",
    card: dict[str, Any] | None = None,
) -> Path:
    """Write a transformers `XLMForSequenceClassification` directory (XNLI label order by default).

    Arguments as `export_lm`; `labels[i]` names class i (`id2label`/`label2id`).
    """
    if len(labels) != model.num_labels:
        raise ValueError(f"{len(labels)} labels for a head with num_labels={model.num_labels}")
    dtype = next(model.parameters()).dtype
    config = hf_config(arch, architectures=["XLMForSequenceClassification"], lang2id=lang2id, causal=False, dtype=dtype)
    config.update(
        num_labels=model.num_labels,
        id2label={str(i): label for i, label in enumerate(labels)},
        label2id={label: i for i, label in enumerate(labels)},
        summary_first_dropout=model.summary_first_dropout,
    )
    tok_config = _tokenizer_config(
        lang2id,
        do_lowercase_and_remove_accent=do_lowercase_and_remove_accent,
        bos_token=bos_token,
        max_len=arch.max_position_embeddings,
    )
    dest = Path(out_dir).resolve()
    info = _card_info(model, arch, dest, lang2id, False, bos_token, {"task": "sequence-classification", **(card or {})})
    path = _export(
        dest,
        lambda tmp: _write_common(
            tmp, model, config, words=words, codes_path=codes_path, tokenizer_config=tok_config, card_info=info
        ),
    )
    logger.info("exported XLMForSequenceClassification (%d labels) to %s", model.num_labels, path)
    return path


def _arch_from_hf_config(config: Mapping[str, Any]) -> XLMArchitecture:
    if config.get("model_type") != "xlm":
        raise ValueError(f"config.json model_type is {config.get('model_type')!r}, expected 'xlm'")
    if config.get("asm", False) or not config.get("is_encoder", True):
        raise ValueError("adaptive-softmax heads and decoders cannot be loaded into XLMWithLMHeadModel")
    return XLMArchitecture(
        vocab_size=config.get("vocab_size", config.get("n_words", 30145)),
        emb_dim=config.get("emb_dim", 2048),
        n_layers=config.get("n_layers", 12),
        n_heads=config.get("n_heads", 16),
        dropout=config.get("dropout", 0.1),
        attention_dropout=config.get("attention_dropout", 0.1),
        gelu_activation=config.get("gelu_activation", True),
        sinusoidal_embeddings=config.get("sinusoidal_embeddings", False),
        n_langs=config.get("n_langs", 1),
        use_lang_emb=config.get("use_lang_emb", True),
        max_position_embeddings=config.get("max_position_embeddings", 512),
        layer_norm_eps=config.get("layer_norm_eps", 1e-12),
        tie_word_embeddings=config.get("tie_word_embeddings", True),
        pad_index=config.get("pad_token_id", config.get("pad_index", PAD_INDEX)),
    )


def model_from_hf_state(
    config: Mapping[str, Any], tensors: dict[str, torch.Tensor], *, source: str | Path
) -> tuple[XLMWithLMHeadModel, XLMArchitecture]:
    """Build the project's LM from a transformers XLM `config` and its `XLMWithLMHeadModel` state dict.

    `tensors` may omit the tied `pred_layer.proj.weight` (safetensors keeps one copy); keys and shapes
    are checked explicitly and every problem is listed with `source` in the message.

    Raises:
        ValueError: missing/unexpected keys or shape mismatches.
    """
    arch = _arch_from_hf_config(config)
    model = XLMWithLMHeadModel(arch)
    expected = model.state_dict()
    tensors = dict(tensors)
    if arch.tie_word_embeddings and _TIED_KEY in tensors:
        if not torch.equal(tensors[_TIED_KEY], tensors.get("transformer.embeddings.weight", tensors[_TIED_KEY])):
            raise ValueError(f"{source}: tie_word_embeddings is true but {_TIED_KEY} differs from the embeddings")
        del tensors[_TIED_KEY]
    required = set(expected) - ({_TIED_KEY} if arch.tie_word_embeddings else set())
    missing = sorted(required - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [
        f"{key}: file {tuple(tensors[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(required & set(tensors))
        if tensors[key].shape != expected[key].shape
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{source} does not match config.json: missing={missing} unexpected={unexpected} "
            f"shape mismatches={mismatched}"
        )
    if arch.tie_word_embeddings:
        tensors[_TIED_KEY] = tensors["transformer.embeddings.weight"]
    model.load_state_dict(tensors, strict=True)
    return model.eval(), arch


def hf_meta(config: Mapping[str, Any]) -> dict[str, Any]:
    """`causal`, `lang2id`, `id2lang` (int keys) and the raw `config` of a transformers XLM config."""
    lang2id = dict(config.get("lang2id") or {})
    # Compat: after a JSON round trip id2lang keys are strings.
    id2lang = {int(i): lang for i, lang in (config.get("id2lang") or {}).items()}
    if not lang2id and id2lang:
        lang2id = {lang: i for i, lang in id2lang.items()}
    return {"causal": bool(config.get("causal", False)), "lang2id": lang2id, "id2lang": id2lang, "config": dict(config)}


def load_lm(export_dir: str | Path) -> tuple[XLMWithLMHeadModel, XLMArchitecture, dict[str, Any]]:
    """Load an `XLMWithLMHeadModel` export (ours or transformers') into the project's model.

    Returns:
        (model in eval mode on CPU, its architecture, meta) where meta holds `causal`, `lang2id`,
        `id2lang` (int keys) and the raw `config`.

    Raises:
        ValueError: missing/unexpected keys or shape mismatches, each listed.
    """
    export_dir = Path(export_dir)
    config = json.loads((export_dir / "config.json").read_text(encoding="utf-8"))
    tensors = load_file(str(export_dir / _WEIGHTS))
    model, arch = model_from_hf_state(config, tensors, source=export_dir / _WEIGHTS)
    return model, arch, hf_meta(config)


def verify_export(
    export_dir: str | Path,
    model: XLMWithLMHeadModel,
    *,
    text: str = "hello world",
    lang: str | None = None,
    atol: float = 1e-4,
) -> float:
    """Load an LM export with transformers and compare its logits with `model` on `text`.

    Needs the optional `transformers` dependency. Returns the max |Δ| of the logits; raises
    ValueError above `atol`.
    """
    from transformers import XLMTokenizer
    from transformers import XLMWithLMHeadModel as HFXLMWithLMHeadModel

    tokenizer = XLMTokenizer.from_pretrained(str(export_dir))
    hf_model = HFXLMWithLMHeadModel.from_pretrained(str(export_dir)).eval()
    input_ids_BT = tokenizer(text, return_tensors="pt")["input_ids"]
    langs_BT = None
    lang2id = tokenizer.lang2id or {}
    if lang2id:
        langs_BT = torch.full_like(input_ids_BT, lang2id[lang] if lang else lang2id.get("en", 0))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ours_BTV = (
                model(
                    input_ids_BT.to(device),
                    langs_BT=None if langs_BT is None else langs_BT.to(device),
                    causal=bool(hf_model.config.causal),
                )
                .float()
                .cpu()
            )
            theirs_BTV = hf_model(input_ids_BT, langs=langs_BT).logits.float()
    finally:
        model.train(was_training)
    diff = float((ours_BTV - theirs_BTV).abs().max())
    if diff > atol:
        raise ValueError(f"{export_dir}: transformers logits differ from the project model by {diff:.3g} > {atol}")
    logger.info("verified %s with transformers: max |Δ logits| = %.3g", export_dir, diff)
    return diff
