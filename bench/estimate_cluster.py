"""Estimate per-step compute and gradient all-reduce time of each seed preset on 8 nodes x 8 GPUs.

A model, not a measurement: FLOPs are counted from the architecture (6 x parameters x tokens for
the matmuls, plus attention scores and the LM head on the predicted positions only), the all-reduce
is a ring over all GPUs moving 2(n-1)/n x gradient bytes per GPU at the inter-node bus bandwidth.

    .venv/bin/python bench/estimate_cluster.py [--peak-tflops 989 --mfu 0.4 --bus-gbps 45 --grad-bytes 4]
"""

from __future__ import annotations

import argparse

from xlm_core.config import load_config
from xlm_core.model import XLMArchitecture, count_parameters

PRESETS = ["xlm-clm-enfr-1024", "xlm-mlm-en-2048", "xlm-mlm-100-1280", "xlm-mlm-tlm-xnli15-1024"]


def estimate(name: str, args: argparse.Namespace) -> dict[str, float]:
    cfg = load_config(name)
    vocab = cfg.bpe.max_vocab
    arch = XLMArchitecture.from_config(cfg.model, vocab_size=vocab, n_langs=len(cfg.data.langs))
    params = count_parameters(arch)
    d, layers, seq = arch.emb_dim, arch.n_layers, cfg.objectives.bptt
    tokens = cfg.objectives.batch_size * seq  # per GPU per update (stream batches)
    body = layers * 12 * d * d  # attention (4 d^2) + FFN (8 d^2) weights per layer
    predicted = 1.0 if cfg.causal else cfg.objectives.word_pred
    flops_per_token = 6 * body + 6 * 2 * layers * seq * d + 6 * d * vocab * predicted
    step_flops = flops_per_token * tokens
    compute_s = step_flops / (args.peak_tflops * 1e12 * args.mfu)
    gpus = args.nodes * args.gpus_per_node
    allreduce_s = 2 * (gpus - 1) / gpus * params * args.grad_bytes / (args.bus_gbps * 1e9)
    # DDP overlaps bucketed all-reduce with the backward pass (about 2/3 of the step's compute).
    exposed_s = max(0.0, allreduce_s - compute_s * 2 / 3)
    step_s = compute_s + exposed_s
    return {
        "params_M": params / 1e6,
        "tokens_per_gpu": tokens,
        "compute_ms": compute_s * 1e3,
        "allreduce_ms": allreduce_s * 1e3,
        "step_ms": step_s * 1e3,
        "cluster_tokens_per_s": tokens * gpus / step_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak per GPU (H100 SXM)")
    parser.add_argument("--mfu", type=float, default=0.4, help="assumed model-FLOPs utilisation")
    parser.add_argument("--bus-gbps", type=float, default=45.0, help="all-reduce bus bandwidth per GPU, GB/s")
    parser.add_argument("--grad-bytes", type=int, default=4, help="bytes per gradient element (4 fp32, 2 bf16)")
    args = parser.parse_args()
    print("| preset | params | tokens/GPU/update | compute | all-reduce | step | cluster tokens/s |")
    print("|---|---|---|---|---|---|---|")
    for name in PRESETS:
        e = estimate(name, args)
        print(
            f"| {name} | {e['params_M']:.0f}M | {e['tokens_per_gpu']:,} | {e['compute_ms']:.0f} ms | "
            f"{e['allreduce_ms']:.0f} ms | {e['step_ms']:.0f} ms | {e['cluster_tokens_per_s'] / 1e6:.2f}M |"
        )


if __name__ == "__main__":
    main()
