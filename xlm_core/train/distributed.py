"""Cross-rank reductions in one place; every function is a no-op on a single process."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

__all__ = ["all_gather_objects", "all_reduce_sums", "broadcast_flag", "is_distributed", "rank_and_world"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sums(values: dict[str, float]) -> dict[str, float]:
    """Sum each value over all ranks (keys must be identical on every rank)."""
    if not is_distributed() or not values:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return dict(zip(keys, tensor.tolist(), strict=True))


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, indexed by rank."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's decision, seen by every rank (so all workers stop together)."""
    if not is_distributed():
        return flag
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int64)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())
