"""README.md model cards in the layout of the Hugging Face XLM hub cards.

`render_model_card(info)` fills what `info` provides and writes "not recorded" for the rest.
Recognised keys (all optional):
    model_name, description, license, languages (list), lang2id, objectives (e.g. ["MLM", "TLM"]),
    steps ({"mlm_steps": [...], "clm_steps": [...]}), causal, task, architecture (dict of XLMArchitecture
    fields), num_parameters, data_sources (list), preprocessing (str or list), bpe (dict),
    hyperparameters (dict), training_time, hardware, perplexity ({lang: ppl} or {split: {lang: ppl}}),
    accuracy (same shapes), eval_split, results_markdown (replaces the results table), bos_token, local_path,
    extra (dict shown in Technical Specs), metrics (the flat valid/test metrics of the run: what it shows
    under "What the model learned", see `xlm_core.evaluation.report.learned_markdown`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xlm_core.evaluation.report import learned_markdown

__all__ = ["XLM_BIBTEX", "render_model_card"]

NOT_RECORDED = "not recorded"
XLM_BIBTEX = """@article{lample2019cross,
  title={Cross-lingual language model pretraining},
  author={Lample, Guillaume and Conneau, Alexis},
  journal={arXiv preprint arXiv:1901.07291},
  year={2019}
}"""
_OBJECTIVE_TEXT = {
    "CLM": "causal language modeling (CLM, next token prediction)",
    "MLM": "masked language modeling (MLM, BERT-like, on monolingual text streams)",
    "TLM": "translation language modeling (TLM, MLM over concatenated parallel sentences)",
}
# Fill-mask examples by language ({mask} is the tokenizer's mask token); others use the English one.
_FILL_MASK_EXAMPLES = {
    "en": "the cat is on the {mask} .",
    "fr": "le chat est sur la {mask} .",
    "de": "die katze sitzt auf dem {mask} .",
    "es": "el gato está en la {mask} .",
}
_SECTIONS = (
    "Model Details",
    "Uses",
    "Bias, Risks, and Limitations",
    "Training",
    "Evaluation",
    "Technical Specifications",
    "Citation",
    "How to Get Started with the Model",
)


def _anchor(title: str) -> str:
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c == "-")


def _value(info: Mapping[str, Any], key: str) -> Any:
    value = info.get(key)
    return NOT_RECORDED if value in (None, "", [], {}) else value


def _bullets(items: Any) -> str:
    if items in (None, "", [], {}):
        return f"- {NOT_RECORDED}"
    if isinstance(items, str):
        return f"- {items}"
    if isinstance(items, Mapping):
        return "\n".join(f"- **{key}:** {value}" for key, value in items.items())
    return "\n".join(f"- {item}" for item in items)


def _results_table(info: Mapping[str, Any]) -> str:
    ppl = info.get("perplexity") or {}
    acc = info.get("accuracy") or {}
    if not ppl:
        return f"Per-language perplexity: {NOT_RECORDED}."
    # Accept {lang: value} or {split: {lang: value}}.
    nested = all(isinstance(v, Mapping) for v in ppl.values())
    splits = ppl if nested else {info.get("eval_split", "valid"): ppl}
    acc_splits = (
        (acc if all(isinstance(v, Mapping) for v in acc.values()) else {next(iter(splits)): acc}) if acc else {}
    )
    rows = ["| split | language | perplexity | accuracy (%) |", "|---|---|---|---|"]
    for split, values in splits.items():
        for lang, value in values.items():
            accuracy = acc_splits.get(split, {}).get(lang)
            acc_text = f"{accuracy:.2f}" if isinstance(accuracy, (int, float)) else NOT_RECORDED
            rows.append(f"| {split} | {lang} | {value:.2f} | {acc_text} |")
    return "\n".join(rows)


def _example_lang(languages: list[str], multilingual: bool) -> str:
    if multilingual and "fr" in languages:
        return "fr"  # a language other than English shows why `langs` matters
    return "en" if "en" in languages or not languages else languages[0]


def _fill_mask_lines(lang: str, multilingual: bool) -> list[str]:
    """Fill-mask by hand: the top 5 tokens and probabilities at the mask (with `langs` when multilingual)."""
    text = _FILL_MASK_EXAMPLES.get(lang, _FILL_MASK_EXAMPLES["en"]).replace("{mask}", "{tokenizer.mask_token}")
    lines = [f'inputs = tokenizer(f"{text}", return_tensors="pt")']
    call = "model(**inputs).logits"
    if multilingual:
        lines += [
            '# pipeline("fill-mask") cannot pass `langs`, and without it the language embeddings are left out',
            "# (an input never seen in training: predictions degrade, often to </s>). Build it from the config:",
            f'langs = torch.full_like(inputs["input_ids"], model.config.lang2id["{lang}"])',
        ]
        call = "model(**inputs, langs=langs).logits"
    return lines + [
        "with torch.no_grad():",
        f"    logits = {call}",
        'position = (inputs["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0].item()',
        "top = logits[0, position].softmax(-1).topk(5)",
        "for prob, token_id in zip(top.values.tolist(), top.indices.tolist()):",
        '    print(f"{tokenizer.convert_ids_to_tokens(token_id)}\\t{prob:.3f}")',
    ]


def _usage_snippet(info: Mapping[str, Any], multilingual: bool) -> str:
    path = info.get("local_path") or f"./{info.get('model_name', 'xlm-model')}"
    lang = _example_lang(list(info.get("languages") or []), multilingual)
    classifier = info.get("task") == "sequence-classification"
    head = "XLMForSequenceClassification" if classifier else "XLMWithLMHeadModel"
    lines = [
        "```python",
        "import torch",
        f"from transformers import XLMTokenizer, {head}",
        "",
        f'tokenizer = XLMTokenizer.from_pretrained("{path}")',
        f'model = {head}.from_pretrained("{path}").eval()',
    ]
    if not classifier and not info.get("causal"):
        lines += _fill_mask_lines(lang, multilingual) + ["```"]
        example = _FILL_MASK_EXAMPLES.get(lang, _FILL_MASK_EXAMPLES["en"]).replace("{mask}", "<mask>")
        lines += ["", f'From this project\'s command line: `xlm predict {path} --lang {lang} "{example}"`.']
        return "\n".join(lines)
    if classifier:
        call = "model(**inputs, langs=langs).logits.argmax(-1)"
        text = '"A man is sleeping.", "Nobody is awake."'
    else:
        call, text = "model(**inputs, langs=langs).logits", '"Wikipedia was used to"'
    lines.append(f'inputs = tokenizer({text}, return_tensors="pt")')
    if multilingual:
        lines += [
            "# Language embeddings are used only when `langs` is passed: always pass it.",
            f'langs = torch.full_like(inputs["input_ids"], model.config.lang2id["{lang}"])',
        ]
    else:
        call = call.replace(", langs=langs", "")
    lines += ["with torch.no_grad():", f"    outputs = {call}", "```"]
    return "\n".join(lines)


def _learned_section(info: Mapping[str, Any]) -> list[str]:
    """The "What the model learned" subsection, when `info["metrics"]` has perplexities or probes."""
    markdown = learned_markdown(info.get("metrics"))
    return ["## What the model learned", "", markdown, ""] if markdown else []


def render_model_card(info: dict[str, Any]) -> str:
    """README.md text: YAML front matter, then the sections of the XLM hub cards."""
    name = info.get("model_name") or "xlm-model"
    languages = list(info.get("languages") or [])
    arch = info.get("architecture") or {}
    objectives = list(info.get("objectives") or [])
    multilingual = len(languages) > 1 and bool(arch.get("use_lang_emb", True))
    license_id = info.get("license") or "unknown"

    front = ["---", "language:"]
    front += [f"- {lang}" for lang in (["multilingual"] if len(languages) > 1 else []) + languages]
    front += [f"license: {license_id}", "library_name: transformers"]
    front += ["tags:", "- xlm", "- fill-mask" if info.get("task") != "sequence-classification" else "- xnli", "---"]

    objective_text = ", ".join(_OBJECTIVE_TEXT.get(o.upper(), o) for o in objectives) or NOT_RECORDED
    causal = info.get("causal")
    lang_table = ", ".join(f"`{k}`: {v}" for k, v in sorted((info.get("lang2id") or {}).items(), key=lambda kv: kv[1]))
    shapes = {
        "layers": arch.get("n_layers"),
        "hidden size": arch.get("emb_dim"),
        "attention heads": arch.get("n_heads"),
        "feed-forward size": 4 * arch["emb_dim"] if "emb_dim" in arch else None,
        "vocabulary": arch.get("vocab_size"),
        "languages (n_langs)": arch.get("n_langs"),
        "language embeddings": arch.get("use_lang_emb"),
        "max positions": arch.get("max_position_embeddings"),
        "parameters": f"{info['num_parameters']:,}" if info.get("num_parameters") else None,
    }
    shapes = {k: (NOT_RECORDED if v is None else v) for k, v in shapes.items()}

    out: list[str] = front + ["", f"# {name}", "", "# Table of Contents", ""]
    out += [f"{i}. [{title}](#{_anchor(title)})" for i, title in enumerate(_SECTIONS, 1)]
    out += [
        "",
        "# Model Details",
        "",
        "The XLM model was proposed in [Cross-lingual Language Model Pretraining](https://arxiv.org/abs/1901.07291) "
        "by Guillaume Lample and Alexis Conneau. "
        + (info.get("description") or f"{name} is a transformer pretrained with {objective_text}."),
        "",
        "## Model Description",
        "",
        "- **Model type:** "
        + ("Sequence classifier" if info.get("task") == "sequence-classification" else "Language model"),
        f"- **Language(s) (NLP):** {', '.join(languages) or NOT_RECORDED}",
        f"- **Language ids (`lang2id`):** {lang_table or NOT_RECORDED}",
        f"- **Objectives:** {objective_text}",
        f"- **Attention:** {'causal' if causal else 'bidirectional' if causal is not None else NOT_RECORDED}",
        f"- **License:** {info.get('license') or NOT_RECORDED}",
        "- **Resources for more information:** [paper](https://arxiv.org/abs/1901.07291), "
        "[original code](https://github.com/facebookresearch/XLM)",
        "",
        "# Uses",
        "",
        "## Direct Use",
        "",
        "Sentence-pair classification (contradiction, neutral, entailment)."
        if info.get("task") == "sequence-classification"
        else "Causal language modeling (next token prediction)."
        if causal
        else "Masked language modeling (`fill-mask`, mask token `<special1>`)."
        + (
            ' `pipeline("fill-mask")` cannot pass `langs`: use the code under How to Get Started.'
            if multilingual
            else ""
        ),
        "",
        "## Downstream Use",
        "",
        "Fine-tuning for cross-lingual classification (e.g. XNLI) and other tasks.",
        "",
        "## Out-of-Scope Use",
        "",
        "The model should not be used to intentionally create hostile or alienating environments for people.",
        "",
        "# Bias, Risks, and Limitations",
        "",
        "The model reflects its training data (see Training). Users should be made aware of the risks, biases "
        "and limitations of language models.",
        "",
        "# Training",
        "",
        "## Training Data",
        "",
        _bullets(info.get("data_sources")),
        "",
        "## Preprocessing",
        "",
        _bullets(info.get("preprocessing")),
        "",
        "BPE: " + (", ".join(f"{k}={v}" for k, v in (info.get("bpe") or {}).items()) or NOT_RECORDED) + ".",
        "",
        "## Model Shapes",
        "",
        _bullets(shapes),
        "",
        "## Training Hyperparameters",
        "",
        _bullets(info.get("hyperparameters")),
        "",
        f"- **Training time:** {_value(info, 'training_time')}",
        f"- **Hardware:** {_value(info, 'hardware')}",
        "",
        "# Evaluation",
        "",
        "## Results",
        "",
        info.get("results_markdown") or _results_table(info),
        "",
        *_learned_section(info),
        "# Technical Specifications",
        "",
        "Post-LayerNorm Transformer encoder (XLM), GELU/ReLU feed-forward of width 4x hidden, learned or sinusoidal "
        "position embeddings, optional language embeddings, output projection tied to the word embeddings "
        f"({'tied' if arch.get('tie_word_embeddings', True) else 'untied'} here). Sentences are encoded as "
        f"`{info.get('bos_token', '</s>')} w1 ... wn </s>`"
        + (" (the original XLM training layout)." if info.get("bos_token", "</s>") == "</s>" else "."),
        "",
        _bullets(info.get("extra")) if info.get("extra") else "",
        "",
        "# Citation",
        "",
        "**BibTeX:**",
        "",
        "```bibtex",
        XLM_BIBTEX,
        "```",
        "",
        "# How to Get Started with the Model",
        "",
        "Use the code below to get started with the model."
        + (
            " Pass `langs=` (one language id per token): the language embeddings are used only then."
            if multilingual
            else ""
        ),
        "",
        _usage_snippet(info, multilingual),
        "",
    ]
    return "\n".join(out)
