"""Tokens per second of one MLM training step: the project's XLMWithLMHeadModel vs transformers'.

Both models get the same weights, shapes, batch and loss: 15% of the positions are MLM targets.
The project's model projects only the predicted positions onto the vocabulary (`pred_mask_BT`),
as the original XLM does; transformers computes logits on every position and takes the
cross-entropy on the masked ones (labels -100 elsewhere). The project's encoder also stops its
last layer at the predicted positions once their attention is computed. One step = forward,
backward, fused AdamW step.
Repetitions alternate between the two models (after a warmup of each) and medians are reported.
The last line printed is `ratio=<ours/transformers>`.

On a CUDA device the script also measures bf16 autocast and the model-FLOPs utilization of the
project's model at the xlm-mlm-tlm-xnli15-1024 shape (12 x 1024, 8 heads, vocabulary 95000) with
sequences of 256 tokens.

    .venv/bin/python bench/train_step.py                      # CPU fp32, 6 x 512, batch 16 x 128
    .venv/bin/python bench/train_step.py --layers 2 --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from xlm_core.model import XLMArchitecture, XLMWithLMHeadModel

MASK_INDEX = 5
# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets (SXM parts).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--word-pred", type=float, default=0.15)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each model first")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps of each model (alternating)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--gpu-batch", type=int, default=32, help="batch for the GPU MFU measurement")
    parser.add_argument("--peak-tflops", type=float, default=None, help="GPU bf16 peak (default: from the table)")
    return parser.parse_args()


def build_pair(args: argparse.Namespace, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The project's model and transformers' with identical weights, both in training mode."""
    from transformers import XLMConfig
    from transformers import XLMWithLMHeadModel as HFXLMWithLMHeadModel

    arch = XLMArchitecture(
        vocab_size=args.vocab,
        emb_dim=args.dim,
        n_layers=args.layers,
        n_heads=args.heads,
        dropout=0.1,
        attention_dropout=0.1,
        gelu_activation=True,
        sinusoidal_embeddings=False,
        n_langs=1,
        use_lang_emb=True,
    )
    torch.manual_seed(0)
    ours = XLMWithLMHeadModel(arch)
    config = XLMConfig(
        vocab_size=args.vocab,
        emb_dim=args.dim,
        n_layers=args.layers,
        n_heads=args.heads,
        dropout=0.1,
        attention_dropout=0.1,
        gelu_activation=True,
        n_langs=1,
        causal=False,
        max_position_embeddings=512,
        layer_norm_eps=1e-12,
    )
    theirs = HFXLMWithLMHeadModel(config)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours.to(device).train(), theirs.to(device).train()


def make_batch(args: argparse.Namespace, device: torch.device, batch: int, seq: int, vocab: int):
    generator = torch.Generator().manual_seed(1)
    tokens_BT = torch.randint(14, vocab, (batch, seq), generator=generator)
    pred_mask_BT = torch.rand(batch, seq, generator=generator) < args.word_pred
    targets_N = tokens_BT[pred_mask_BT]
    inputs_BT = tokens_BT.masked_fill(pred_mask_BT, MASK_INDEX)
    labels_BT = torch.full_like(tokens_BT, -100).masked_scatter(pred_mask_BT, targets_N)
    return [t.to(device) for t in (inputs_BT, pred_mask_BT, targets_N, labels_BT)]


def step_functions(ours, theirs, batch, autocast: Callable[[], contextlib.AbstractContextManager]):
    inputs_BT, pred_mask_BT, targets_N, labels_BT = batch
    # Fused AdamW on both sides: the project's `build_optimizer` and transformers' Trainer default
    # (`adamw_torch_fused`) both use it.
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-4, fused=True)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-4, fused=True)

    def step_ours() -> float:
        with autocast():
            logits_NV = ours(inputs_BT, pred_mask_BT=pred_mask_BT)
        loss = F.cross_entropy(logits_NV.float(), targets_N)
        loss.backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)
        return float(loss.detach())

    def step_theirs() -> float:
        with autocast():
            loss = theirs(input_ids=inputs_BT, labels=labels_BT).loss
        loss.backward()
        opt_theirs.step()
        opt_theirs.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step_ours, step_theirs


def timed(fn: Callable[[], float], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()  # float(loss) syncs with the device
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved(step_a, step_b, *, warmup: int, repeats: int, device: torch.device) -> tuple[float, float]:
    """Median seconds per step of A and B; A and B alternate, the order flips every repetition."""
    for _ in range(warmup):
        step_a()
        step_b()
    times_a, times_b = [], []
    for rep in range(repeats):
        if rep % 2 == 0:
            times_a.append(timed(step_a, device))
            times_b.append(timed(step_b, device))
        else:
            times_b.append(timed(step_b, device))
            times_a.append(timed(step_a, device))
    return statistics.median(times_a), statistics.median(times_b)


def model_flops_per_step(args: argparse.Namespace, *, batch: int, seq: int, num_pred: int) -> float:
    """6 * non-embedding params * tokens + 6 * D * V * predicted tokens + attention (12 * L * B * T^2 * D)."""
    layer_params = 12 * args.dim * args.dim + 13 * args.dim  # q/k/v/out, FFN 4x, biases, two LayerNorms
    tokens = batch * seq
    dense = 6 * args.layers * layer_params * tokens
    head = 6 * args.dim * args.vocab * num_pred
    attention = 12 * args.layers * batch * seq * seq * args.dim
    return float(dense + head + attention)


def gpu_section(args: argparse.Namespace) -> None:
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    bf16 = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
    ours, theirs = build_pair(args, device)
    batch = make_batch(args, device, args.batch, args.seq, args.vocab)
    step_ours, step_theirs = step_functions(ours, theirs, batch, bf16)
    t_ours, t_theirs = interleaved(step_ours, step_theirs, warmup=args.warmup, repeats=args.repeats, device=device)
    tokens = args.batch * args.seq
    print(
        f"gpu {name} bf16 {args.layers}x{args.dim}: ours {tokens / t_ours:,.0f} tok/s, "
        f"transformers {tokens / t_theirs:,.0f} tok/s, ratio {t_theirs / t_ours:.2f}"
    )
    del ours, theirs, batch, step_ours, step_theirs
    torch.cuda.empty_cache()

    xnli = argparse.Namespace(**{**vars(args), "layers": 12, "dim": 1024, "heads": 8, "vocab": 95000})
    ours, theirs = build_pair(xnli, device)
    seq, batch_size = 256, args.gpu_batch
    batch = make_batch(xnli, device, batch_size, seq, xnli.vocab)
    step_ours, step_theirs = step_functions(ours, theirs, batch, bf16)
    t_ours, t_theirs = interleaved(step_ours, step_theirs, warmup=args.warmup, repeats=args.repeats, device=device)
    flops = model_flops_per_step(xnli, batch=batch_size, seq=seq, num_pred=int(batch[2].numel()))
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    tokens = batch_size * seq
    mfu = f"{flops / t_ours / (peak * 1e12):.1%} of {peak:.0f} TFLOP/s" if peak else "unknown peak (--peak-tflops)"
    print(
        f"gpu {name} bf16 xlm-mlm-tlm-xnli15-1024 shape, {batch_size}x{seq}: ours {tokens / t_ours:,.0f} tok/s "
        f"({flops / t_ours / 1e12:.1f} TFLOP/s, MFU {mfu}), transformers {tokens / t_theirs:,.0f} tok/s"
    )


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    ours, theirs = build_pair(args, device)
    batch = make_batch(args, device, args.batch, args.seq, args.vocab)
    step_ours, step_theirs = step_functions(ours, theirs, batch, contextlib.nullcontext)
    t_ours, t_theirs = interleaved(step_ours, step_theirs, warmup=args.warmup, repeats=args.repeats, device=device)
    tokens = args.batch * args.seq
    print(
        f"cpu fp32, {args.threads} threads, {args.layers}x{args.dim}, {args.heads} heads, vocab {args.vocab}, "
        f"batch {args.batch}x{args.seq}, {args.repeats} repeats (medians)"
    )
    print(f"ours         {tokens / t_ours:10,.0f} tok/s  ({t_ours * 1e3:.1f} ms/step)")
    print(f"transformers {tokens / t_theirs:10,.0f} tok/s  ({t_theirs * 1e3:.1f} ms/step)")
    if torch.cuda.is_available():
        gpu_section(args)
    print(f"ratio={t_theirs / t_ours:.2f}")


if __name__ == "__main__":
    main()
