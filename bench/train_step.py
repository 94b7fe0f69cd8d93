"""Tokens per second of one MLM training step: the project's XLMWithLMHeadModel vs transformers'.

Both models get the same weights, shapes, batch and loss: 15% of the positions are MLM targets.
The project's model projects only the predicted positions onto the vocabulary (`pred_mask_BT`),
as the original XLM does; transformers computes logits on every position and takes the
cross-entropy on the masked ones (labels -100 elsewhere). The project's encoder also stops its
last layer at the predicted positions once their attention is computed. One step = forward,
backward, fused AdamW step.
Repetitions alternate between the two models (after a warmup of each) and medians are reported.

In the same run the script measures the CPU's fp32 matmul peak (a large square `torch.matmul`, best
of several, at the step's thread count, before and after the steps) and prints each model's achieved
matmul FLOP/s as a fraction of it (`cpu_mfu`), with the FLOP ratio of the two steps: the speed ratio
divided by the FLOP ratio is ours' FLOP/s over transformers'. The last two lines are
`cpu_mfu=<ours>` and `ratio=<ours/transformers>` (transformers' seconds per step over ours).

On a CUDA device the script also measures bf16 autocast and the model-FLOPs utilization of the
project's model at the xlm-mlm-tlm-xnli15-1024 shape (12 x 1024, 8 heads, vocabulary 95000) with
sequences of 256 tokens.

    .venv/bin/python bench/train_step.py                      # CPU fp32, 6 x 512, batch 16 x 128
    .venv/bin/python bench/train_step.py --layers 2 --repeats 5
    .venv/bin/python bench/train_step.py --quick              # small shape, a smoke run of seconds
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from xlm_core.model import XLMArchitecture, XLMWithLMHeadModel

MASK_INDEX = 5
# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets (SXM parts).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}
# --quick: a shape small enough for a smoke run of a few seconds; flags given explicitly still win.
QUICK_DEFAULTS = {
    "layers": 2,
    "dim": 256,
    "heads": 4,
    "vocab": 8000,
    "batch": 8,
    "seq": 64,
    "warmup": 1,
    "repeats": 4,
    "peak_size": 1024,
    "peak_repeats": 3,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
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
    parser.add_argument("--peak-size", type=int, default=4096, help="side of the square fp32 matmul for the CPU peak")
    parser.add_argument("--peak-repeats", type=int, default=5, help="timed matmuls before and after the steps")
    parser.add_argument("--quick", action="store_true", help="small shape and few repeats (smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**QUICK_DEFAULTS)
        args = parser.parse_args(argv)
    return args


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


def step_flops(
    *, layers: int, dim: int, vocab: int, batch: int, seq: int, head_rows: int, last_layer_rows: int
) -> float:
    """Matmul FLOPs of one training step (forward + backward), 2 FLOPs per multiply-add.

    Counts the forward's weight matmuls (q/k/v on every position; out_lin and the 4x FFN on every
    position, except `last_layer_rows` in the last layer), the attention scores q k^T and the
    probability x value product (T x T per head), and the output projection on `head_rows`; the
    backward is twice the forward (input and weight gradients), so the step is 3 x forward. Not
    counted: biases, LayerNorms, GELU, softmax, dropout, the embedding lookup and its gradient, and
    the optimizer step (none of them matmuls). torch's FlopCounterMode gives the same total on both
    models (tests/unit/test_bench_mfu.py).
    """
    tokens = batch * seq
    qkv = 3 * 2 * tokens * dim * dim
    scores_values = 2 * 2 * batch * seq * seq * dim

    def out_lin_ffn(rows: int) -> int:
        return 2 * rows * dim * dim * (1 + 4 + 4)  # out_lin D x D, lin1 D x 4D, lin2 4D x D

    forward = (
        layers * (qkv + scores_values)
        + (layers - 1) * out_lin_ffn(tokens)
        + out_lin_ffn(last_layer_rows)
        + 2 * head_rows * dim * vocab
    )
    return 3.0 * forward


def matmul_peak_flops(*, size: int, repeats: int) -> float:
    """Best FLOP/s of an fp32 (size x size) @ (size x size) `torch.matmul` at torch's current thread count."""
    generator = torch.Generator().manual_seed(2)
    a_SS = torch.randn(size, size, generator=generator)
    b_SS = torch.randn(size, size, generator=generator)
    out_SS = torch.empty(size, size)
    torch.matmul(a_SS, b_SS, out=out_SS)  # untimed: pages in the operands and lets the BLAS pick its kernel
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a_SS, b_SS, out=out_SS)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


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
    # Model FLOPs as MFU conventionally counts them: the last layer on every position, although ours
    # computes its out_lin and FFN on the predicted rows only.
    flops = step_flops(
        layers=xnli.layers,
        dim=xnli.dim,
        vocab=xnli.vocab,
        batch=batch_size,
        seq=seq,
        head_rows=int(batch[2].numel()),
        last_layer_rows=batch_size * seq,
    )
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    tokens = batch_size * seq
    mfu = f"{flops / t_ours / (peak * 1e12):.1%} of {peak:.0f} TFLOP/s" if peak else "unknown peak (--peak-tflops)"
    print(
        f"gpu {name} bf16 xlm-mlm-tlm-xnli15-1024 shape, {batch_size}x{seq}: ours {tokens / t_ours:,.0f} tok/s "
        f"({flops / t_ours / 1e12:.1f} TFLOP/s, MFU {mfu}), transformers {tokens / t_theirs:,.0f} tok/s"
    )


def print_cpu_table(args: argparse.Namespace, *, num_pred: int, t_ours: float, t_theirs: float, peak: float) -> float:
    """The side-by-side table of the CPU run; returns ours' cpu_mfu."""
    tokens = args.batch * args.seq
    shape = {"layers": args.layers, "dim": args.dim, "vocab": args.vocab, "batch": args.batch, "seq": args.seq}
    # Rows actually computed: ours projects the predicted positions only and runs its last layer's
    # out_lin/FFN on them; transformers computes both on every position.
    flops_ours = step_flops(**shape, head_rows=num_pred, last_layer_rows=num_pred)
    flops_theirs = step_flops(**shape, head_rows=tokens, last_layer_rows=tokens)
    mfu_ours = flops_ours / t_ours / peak
    mfu_theirs = flops_theirs / t_theirs / peak
    ratio = t_theirs / t_ours
    flop_ratio = flops_theirs / flops_ours
    print(f"{'':22}{'ours':>12}{'transformers':>14}")
    print(f"{'s/step':22}{t_ours:12.3f}{t_theirs:14.3f}")
    print(f"{'tok/s':22}{tokens / t_ours:12,.0f}{tokens / t_theirs:14,.0f}")
    print(f"{'GFLOP/step (matmul)':22}{flops_ours / 1e9:12.1f}{flops_theirs / 1e9:14.1f}")
    print(f"{'GFLOP/s achieved':22}{flops_ours / t_ours / 1e9:12.1f}{flops_theirs / t_theirs / 1e9:14.1f}")
    print(f"{'cpu_mfu':22}{mfu_ours:12.3f}{mfu_theirs:14.3f}   target >= 0.75")
    print(f"{'ratio':22}{ratio:12.2f}   transformers s/step / ours")
    print(f"{'FLOP ratio':22}{flop_ratio:12.2f}   transformers FLOP/step / ours")
    # (t_theirs / t_ours) / (F_theirs / F_ours) = ours' FLOP/s over transformers'.
    print(f"{'ratio / FLOP ratio':22}{ratio / flop_ratio:12.3f}   target >= 0.95")
    return mfu_ours


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    # The peak is measured before and after the steps and the best kept, so that a quiet moment of a
    # shared machine sets it: cpu_mfu then errs low, not high.
    peak_before = matmul_peak_flops(size=args.peak_size, repeats=args.peak_repeats)
    ours, theirs = build_pair(args, device)
    batch = make_batch(args, device, args.batch, args.seq, args.vocab)
    step_ours, step_theirs = step_functions(ours, theirs, batch, contextlib.nullcontext)
    t_ours, t_theirs = interleaved(step_ours, step_theirs, warmup=args.warmup, repeats=args.repeats, device=device)
    peak_after = matmul_peak_flops(size=args.peak_size, repeats=args.peak_repeats)
    peak = max(peak_before, peak_after)
    num_pred = int(batch[2].numel())
    print(
        f"cpu fp32, {torch.get_num_threads()} threads, {args.layers}x{args.dim}, {args.heads} heads, "
        f"vocab {args.vocab}, batch {args.batch}x{args.seq} ({num_pred} predicted), {args.repeats} repeats (medians)"
    )
    print(
        f"fp32 matmul peak {peak / 1e9:.1f} GFLOP/s ({args.peak_size}^2 x {args.peak_size}^2, best of "
        f"{args.peak_repeats}: {peak_before / 1e9:.1f} before the steps, {peak_after / 1e9:.1f} after)"
    )
    mfu_ours = print_cpu_table(args, num_pred=num_pred, t_ours=t_ours, t_theirs=t_theirs, peak=peak)
    if torch.cuda.is_available():
        gpu_section(args)
    print(f"cpu_mfu={mfu_ours:.3f}")
    print(f"ratio={t_theirs / t_ours:.2f}")


if __name__ == "__main__":
    main()
