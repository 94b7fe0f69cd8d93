"""The FLOP count behind bench/train_step.py's cpu_mfu: a hand computation and torch's own counter."""

from __future__ import annotations

import contextlib

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.train_step import build_pair, make_batch, parse_args, step_flops, step_functions


def test_step_flops_matches_hand_count() -> None:
    # 2 layers, D=4, V=10, one sequence of 3 tokens, one predicted row; forward, 2 FLOPs per multiply-add:
    # per layer q/k/v 3*2*3*16 = 288, scores + values 2*2*1*9*4 = 144; out_lin + FFN 2*rows*16*9
    # = 864 on 3 rows (first layer), 288 on 1 row (last layer); projection 2*1*4*10 = 80.
    forward = 2 * (288 + 144) + 864 + 288 + 80
    flops = step_flops(layers=2, dim=4, vocab=10, batch=1, seq=3, head_rows=1, last_layer_rows=1)
    assert flops == 3 * forward


def test_step_flops_matches_torch_flop_counter_on_both_steps() -> None:
    args = parse_args(["--layers", "2", "--dim", "32", "--heads", "4", "--vocab", "99", "--batch", "2", "--seq", "16"])
    ours, theirs = build_pair(args, torch.device("cpu"))
    batch = make_batch(args, torch.device("cpu"), args.batch, args.seq, args.vocab)
    step_ours, step_theirs = step_functions(ours, theirs, batch, contextlib.nullcontext)
    num_pred, tokens = int(batch[2].numel()), args.batch * args.seq
    assert 0 < num_pred < tokens
    shape = {"layers": 2, "dim": 32, "vocab": 99, "batch": 2, "seq": 16}
    # Ours computes the projection and the last layer's out_lin/FFN on the predicted rows only.
    for step, rows in ((step_ours, num_pred), (step_theirs, tokens)):
        with FlopCounterMode(display=False) as counter:
            step()
        assert counter.get_total_flops() == step_flops(**shape, head_rows=rows, last_layer_rows=rows)
