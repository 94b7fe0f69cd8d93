"""The registered model's code: an MLflow pyfunc over the transformers export (MLflow "model from code").

The model registry stores this file next to the export directory (config.json, model.safetensors,
vocab.json, merges.txt) and runs it to load the model: it imports only public packages (mlflow, pandas,
torch, transformers with sacremoses), never this project, and nothing is pickled. Keep it that way:
a registered model must load where this project is not installed.

Input, one row per sentence: `text`, a sentence with one or more `<special1>` (the mask token), and
`lang`, one of the model's languages (its language embedding; the transformers fill-mask pipeline has
no way to pass it). Output, one row per input row: `filled`, the sentence with each mask replaced by
the model's best token; `tokens`, those tokens in order; `scores`, their probabilities. A causal (CLM)
model predicts each mask from the words before it.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel

EXPORT_ARTIFACT = "hf_export"  # the artifacts key of the export directory


class XLMFillMask(PythonModel):
    """Fill `<special1>` masks with an XLM language model exported for transformers."""

    def load_context(self, context: Any) -> None:
        from transformers import XLMTokenizer, XLMWithLMHeadModel

        path = context.artifacts[EXPORT_ARTIFACT]
        self.tokenizer = XLMTokenizer.from_pretrained(path)
        self.model = XLMWithLMHeadModel.from_pretrained(path).eval()
        self.causal = bool(getattr(self.model.config, "causal", False))
        decoder = self.tokenizer.added_tokens_decoder  # <s> too, which is no named special when bos is </s>
        self.special_ids = sorted({*self.tokenizer.all_special_ids, *(i for i, t in decoder.items() if t.special)})

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        missing = {"text", "lang"} - set(frame.columns)
        if missing:
            raise ValueError(f"XLMFillMask input needs the columns text and lang; missing {sorted(missing)}")
        rows = [self._fill(str(text), str(lang)) for text, lang in zip(frame["text"], frame["lang"], strict=True)]
        return pd.DataFrame(rows, columns=["filled", "tokens", "scores"])

    def _fill(self, text: str, lang: str) -> dict[str, Any]:
        lang2id = self.tokenizer.lang2id or {}
        if lang2id and lang not in lang2id:
            raise ValueError(f"lang {lang!r} is not a language of this model; use one of {sorted(lang2id)}")
        input_ids_T = torch.tensor(self.tokenizer.encode(text, lang=lang))
        masks = (input_ids_T == self.tokenizer.mask_token_id).nonzero().flatten()
        if not len(masks):
            raise ValueError(f"no mask token {self.tokenizer.mask_token} in {text!r}")
        langs = torch.full_like(input_ids_T, lang2id[lang])[None] if lang2id else None
        with torch.no_grad():
            logits_TV = self.model(input_ids=input_ids_T[None], langs=langs).logits[0].float()
        logits_TV[:, self.special_ids] = float("-inf")
        # A causal model's output at position t predicts the token at t + 1 (masks never sit at 0: bos).
        probs_MV = logits_TV[masks - 1 if self.causal else masks].softmax(-1)
        scores_M, best_M = probs_MV.max(-1)
        filled_T = input_ids_T.clone()
        filled_T[masks] = best_M
        return {
            "filled": self.tokenizer.decode(filled_T, skip_special_tokens=True),
            "tokens": [
                self.tokenizer.convert_tokens_to_string([t])
                for t in self.tokenizer.convert_ids_to_tokens(best_M.tolist())
            ],
            "scores": [round(float(s), 6) for s in scores_M],
        }


mlflow.models.set_model(XLMFillMask())
