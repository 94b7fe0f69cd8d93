"""The XLM encoder (Lample & Conneau, 2019) with transformers-compatible parameter names.

Module and parameter names are exactly those of `transformers.XLMModel` / `XLMWithLMHeadModel`,
so a state dict moves between the two with nothing but the `transformer.` prefix
(docs/transformers-compatibility.md, "Parameter names and state-dict keys"). Numerics follow
docs/transformers-compatibility.md, "Numerics".

Shape legend (suffixes of tensor names):
    B batch · T time (sequence) · D emb_dim · H heads · K head_dim (D / H) · F FFN width (4D)
    V vocabulary · N predicted positions (flattened over the batch) · P max positions
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xlm_core.config import ModelConfig

__all__ = ["XLMArchitecture", "XLMModel", "XLMWithLMHeadModel", "count_parameters", "sinusoidal_table"]

logger = logging.getLogger(__name__)


@dataclass
class XLMArchitecture:
    """Everything that fixes the model's shapes and numerics; field names match `XLMConfig`."""

    vocab_size: int
    emb_dim: int
    n_layers: int
    n_heads: int
    dropout: float
    attention_dropout: float
    gelu_activation: bool
    sinusoidal_embeddings: bool
    n_langs: int
    use_lang_emb: bool
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12
    tie_word_embeddings: bool = True
    pad_index: int = 2

    def __post_init__(self) -> None:
        if self.emb_dim % self.n_heads:
            raise ValueError(f"model.emb_dim ({self.emb_dim}) must be divisible by model.n_heads ({self.n_heads})")
        if self.n_langs < 1 or self.vocab_size <= self.pad_index:
            raise ValueError(f"need n_langs >= 1 and vocab_size > pad_index (got {self.n_langs}, {self.vocab_size})")

    @classmethod
    def from_config(cls, model_cfg: ModelConfig, *, vocab_size: int, n_langs: int) -> XLMArchitecture:
        """Architecture from the `model` config section plus the data-derived sizes."""
        return cls(
            vocab_size=vocab_size,
            emb_dim=model_cfg.emb_dim,
            n_layers=model_cfg.n_layers,
            n_heads=model_cfg.n_heads,
            dropout=model_cfg.dropout,
            attention_dropout=model_cfg.attention_dropout,
            gelu_activation=model_cfg.gelu_activation,
            sinusoidal_embeddings=model_cfg.sinusoidal_embeddings,
            n_langs=n_langs,
            use_lang_emb=model_cfg.use_lang_emb,
            max_position_embeddings=model_cfg.max_position_embeddings,
            layer_norm_eps=model_cfg.layer_norm_eps,
            tie_word_embeddings=model_cfg.tie_word_embeddings,
        )

    @property
    def head_dim(self) -> int:
        return self.emb_dim // self.n_heads

    @property
    def has_lang_embeddings(self) -> bool:
        return self.n_langs > 1 and self.use_lang_emb

    def to_dict(self) -> dict[str, int | float | bool]:
        return asdict(self)


def sinusoidal_table(num_positions: int, dim: int) -> torch.Tensor:
    """Fixed position table: angle pos / 10000^(2*(j//2)/dim); sin on even dims, cos on odd (P, D)."""
    pos_P1 = torch.arange(num_positions, dtype=torch.float64)[:, None]
    j_D = torch.arange(dim, dtype=torch.float64)
    angle_PD = pos_P1 / torch.pow(10000.0, 2 * torch.div(j_D, 2, rounding_mode="floor") / dim)
    table_PD = torch.empty(num_positions, dim, dtype=torch.float64)
    table_PD[:, 0::2] = torch.sin(angle_PD[:, 0::2])
    table_PD[:, 1::2] = torch.cos(angle_PD[:, 1::2])
    return table_PD.float()


def _init_embedding(emb: nn.Embedding, dim: int, padding_idx: int | None = None) -> None:
    # Original XLM: N(0, dim^-0.5) for every embedding table, padding row zeroed.
    nn.init.normal_(emb.weight, mean=0.0, std=dim**-0.5)
    if padding_idx is not None:
        with torch.no_grad():
            emb.weight[padding_idx].zero_()


class MultiHeadAttention(nn.Module):
    """Self-attention with q_lin/k_lin/v_lin/out_lin, computed by `F.scaled_dot_product_attention`."""

    def __init__(self, arch: XLMArchitecture) -> None:
        super().__init__()
        dim = arch.emb_dim
        self.n_heads = arch.n_heads
        self.head_dim = arch.head_dim
        self.attention_dropout = arch.attention_dropout
        self.q_lin = nn.Linear(dim, dim)
        self.k_lin = nn.Linear(dim, dim)
        self.v_lin = nn.Linear(dim, dim)
        self.out_lin = nn.Linear(dim, dim)

    def forward(self, h_BTD: torch.Tensor, key_mask_B11T: torch.Tensor | None, causal: bool) -> torch.Tensor:
        return self.out_lin(self.context(h_BTD, key_mask_B11T, causal))

    def context(self, h_BTD: torch.Tensor, key_mask_B11T: torch.Tensor | None, causal: bool) -> torch.Tensor:
        """The heads' attention outputs, concatenated (B, T, D), before `out_lin`."""
        batch, time, dim = h_BTD.shape
        q_BHTK = self.q_lin(h_BTD).view(batch, time, self.n_heads, self.head_dim).transpose(1, 2)
        k_BHTK = self.k_lin(h_BTD).view(batch, time, self.n_heads, self.head_dim).transpose(1, 2)
        v_BHTK = self.v_lin(h_BTD).view(batch, time, self.n_heads, self.head_dim).transpose(1, 2)
        # Compat: XLM/transformers compute softmax(q k^T / sqrt(K)) in fp32 and cast back; SDPA does the
        # same for fp32 (difference ~1e-7). Under bf16/fp16 the fused kernels keep fp32 softmax
        # statistics but round the probabilities to the input dtype before the value product, as
        # transformers does after `.type_as(scores)`. Measured under CPU bf16 autocast (tiny model):
        # ours vs transformers 1.6e-2 on logits of magnitude ~4, the same as either one vs fp32.
        # Compat: the causal mask ignores padding (original XLM and transformers); padded queries
        # are zeroed after every layer anyway.
        ctx_BHTK = F.scaled_dot_product_attention(
            q_BHTK,
            k_BHTK,
            v_BHTK,
            attn_mask=None if causal else key_mask_B11T,
            dropout_p=self.attention_dropout if self.training else 0.0,
            is_causal=causal,
        )
        return ctx_BHTK.transpose(1, 2).reshape(batch, time, dim)


class TransformerFFN(nn.Module):
    """lin1 (D -> 4D) -> GELU(erf) or ReLU -> lin2 -> dropout; no inner dropout."""

    def __init__(self, arch: XLMArchitecture) -> None:
        super().__init__()
        # Compat: the FFN width is fixed at 4 * emb_dim in XLM and transformers (no config field).
        self.lin1 = nn.Linear(arch.emb_dim, 4 * arch.emb_dim)
        self.lin2 = nn.Linear(4 * arch.emb_dim, arch.emb_dim)
        self.dropout = arch.dropout
        self.act = F.gelu if arch.gelu_activation else F.relu

    def forward(self, h_BTD: torch.Tensor) -> torch.Tensor:
        f_BTF = self.act(self.lin1(h_BTD))
        return F.dropout(self.lin2(f_BTF), p=self.dropout, training=self.training)


class XLMModel(nn.Module):
    """The XLM Transformer encoder; returns the last hidden states (B, T, D)."""

    def __init__(self, arch: XLMArchitecture) -> None:
        super().__init__()
        self.arch = arch
        dim = arch.emb_dim
        self.dropout = arch.dropout
        self.pad_index = arch.pad_index

        self.position_embeddings = nn.Embedding(arch.max_position_embeddings, dim)
        if arch.has_lang_embeddings:
            self.lang_embeddings = nn.Embedding(arch.n_langs, dim)
        self.embeddings = nn.Embedding(arch.vocab_size, dim, padding_idx=arch.pad_index)
        self.layer_norm_emb = nn.LayerNorm(dim, eps=arch.layer_norm_eps)

        self.attentions = nn.ModuleList(MultiHeadAttention(arch) for _ in range(arch.n_layers))
        self.layer_norm1 = nn.ModuleList(nn.LayerNorm(dim, eps=arch.layer_norm_eps) for _ in range(arch.n_layers))
        self.ffns = nn.ModuleList(TransformerFFN(arch) for _ in range(arch.n_layers))
        self.layer_norm2 = nn.ModuleList(nn.LayerNorm(dim, eps=arch.layer_norm_eps) for _ in range(arch.n_layers))

        self.register_buffer("position_ids", torch.arange(arch.max_position_embeddings)[None], persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        dim = self.arch.emb_dim
        _init_embedding(self.embeddings, dim, padding_idx=self.pad_index)
        _init_embedding(self.position_embeddings, dim)
        if self.arch.has_lang_embeddings:
            _init_embedding(self.lang_embeddings, dim)
        if self.arch.sinusoidal_embeddings:
            weight_PD = self.position_embeddings.weight
            if weight_PD.device.type != "meta":
                with torch.no_grad():
                    weight_PD.copy_(sinusoidal_table(*weight_PD.shape))
            weight_PD.requires_grad_(False)

    def forward(
        self,
        input_ids_BT: torch.Tensor,
        *,
        lengths_B: torch.Tensor | None = None,
        attention_mask_BT: torch.Tensor | None = None,
        positions_BT: torch.Tensor | None = None,
        langs_BT: torch.Tensor | None = None,
        causal: bool = False,
        select_BT: torch.Tensor | None = None,
        return_layer: int | None = None,
    ) -> torch.Tensor:
        """Encode a right-padded batch.

        Args:
            input_ids_BT: token ids (B, T).
            lengths_B: sentence lengths; default: the number of non-pad ids per row.
            attention_mask_BT: 1 for real tokens; overrides `lengths_B` when given (as in transformers).
            positions_BT: position ids; default `arange(T)` for every row.
            langs_BT: language ids; added only when given and the model has language embeddings.
            causal: triangular self-attention (CLM).
            select_BT: boolean mask of the positions whose output is needed (e.g. the MLM targets,
                or the first column for a classifier). The last layer then computes its attention
                output projection, FFN and LayerNorms on those rows only; keys and values still
                come from every position, so the selected rows equal those of the full output.
            return_layer: stop early and return the hidden states after this many layers (0: the
                embeddings after their LayerNorm; n_layers: the usual output), as transformers'
                `hidden_states[return_layer]`. Not combinable with `select_BT`.

        Returns:
            hidden_BTD, with padded positions exactly zero; with `select_BT`, hidden_ND of the
            selected positions in row-major order.
        """
        time = input_ids_BT.shape[1]
        if attention_mask_BT is not None:
            mask_BT = attention_mask_BT != 0
        else:
            if lengths_B is None:
                # Compat: default lengths count non-pad ids, assuming right padding (transformers).
                lengths_B = (input_ids_BT != self.pad_index).sum(dim=1)
            mask_BT = torch.arange(time, device=input_ids_BT.device)[None] < lengths_B[:, None]
        if positions_BT is None and time > self.arch.max_position_embeddings:
            raise ValueError(
                f"input of {time} tokens is longer than max_position_embeddings="
                f"{self.arch.max_position_embeddings}; shorten or split the sequences"
            )
        pos_BT = self.position_ids[:, :time] if positions_BT is None else positions_BT

        # Compat: no sqrt(D) scaling; one LayerNorm over the sum of word, position and language embeddings.
        h_BTD = self.embeddings(input_ids_BT) + self.position_embeddings(pos_BT)
        if langs_BT is not None and self.arch.has_lang_embeddings:
            h_BTD = h_BTD + self.lang_embeddings(langs_BT)
        h_BTD = self.layer_norm_emb(h_BTD)
        h_BTD = F.dropout(h_BTD, p=self.dropout, training=self.training)
        mask_BT1 = mask_BT.unsqueeze(-1).to(h_BTD.dtype)
        h_BTD = h_BTD * mask_BT1

        if return_layer is not None and not (0 <= return_layer <= len(self.attentions) and select_BT is None):
            raise ValueError(
                f"return_layer={return_layer}: must be in [0, n_layers={len(self.attentions)}] and without select_BT"
            )
        if return_layer == 0:
            return h_BTD
        key_mask_B11T = None if causal else mask_BT[:, None, None, :]
        last = len(self.attentions) - 1
        for layer, (attention, norm1, ffn, norm2) in enumerate(
            zip(self.attentions, self.layer_norm1, self.ffns, self.layer_norm2, strict=True)
        ):
            if layer == last and select_BT is not None:
                # Only the selected rows are needed after the last attention: at 15% MLM targets this
                # skips ~85% of the last layer's out_lin and FFN (a sixth of a 6-layer body's FLOPs).
                ctx_ND = attention.context(h_BTD, key_mask_B11T, causal)[select_BT]
                a_ND = F.dropout(attention.out_lin(ctx_ND), p=self.dropout, training=self.training)
                h_ND = norm1(h_BTD[select_BT] + a_ND)
                h_ND = norm2(h_ND + ffn(h_ND))
                return h_ND * mask_BT1[select_BT]
            # Compat: post-LN residual blocks, as in XLM and transformers.
            a_BTD = F.dropout(attention(h_BTD, key_mask_B11T, causal), p=self.dropout, training=self.training)
            h_BTD = norm1(h_BTD + a_BTD)
            h_BTD = norm2(h_BTD + ffn(h_BTD))
            h_BTD = h_BTD * mask_BT1
            if return_layer == layer + 1:
                return h_BTD
        return h_BTD if select_BT is None else h_BTD[select_BT]


class PredLayer(nn.Module):
    """Output projection `proj` (D -> V, with bias), named as transformers' `XLMPredLayer`."""

    def __init__(self, arch: XLMArchitecture) -> None:
        super().__init__()
        self.proj = nn.Linear(arch.emb_dim, arch.vocab_size, bias=True)


class XLMWithLMHeadModel(nn.Module):
    """XLM encoder plus the (tied) language-model head; used for CLM, MLM and TLM."""

    def __init__(self, arch: XLMArchitecture) -> None:
        super().__init__()
        self.arch = arch
        self.transformer = XLMModel(arch)
        self.pred_layer = PredLayer(arch)
        if arch.tie_word_embeddings:
            self.pred_layer.proj.weight = self.transformer.embeddings.weight  # weight tying

    def forward(
        self, input_ids_BT: torch.Tensor, *, pred_mask_BT: torch.Tensor | None = None, **kwargs: object
    ) -> torch.Tensor:
        """Logits (N, V) for the positions selected by `pred_mask_BT` (in row-major order), else (B, T, V).

        Keyword arguments are those of `XLMModel.forward`.
        """
        if pred_mask_BT is not None:
            # Project only the predicted positions, as the original does: V is large. The encoder's
            # last layer also stops at those positions after its attention.
            return self.pred_layer.proj(self.transformer(input_ids_BT, select_BT=pred_mask_BT, **kwargs))
        return self.pred_layer.proj(self.transformer(input_ids_BT, **kwargs))


def count_parameters(arch: XLMArchitecture) -> int:
    """Parameters of `XLMWithLMHeadModel(arch)` (tied weights once), counted on the meta device."""
    with torch.device("meta"):
        model = XLMWithLMHeadModel(arch)
    return sum(p.numel() for p in model.parameters())
