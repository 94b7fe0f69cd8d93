"""Pretraining: the loop, one optimizer step, schedules, cross-rank reductions, metric loggers and the
Ray Train launcher (the only module importing Ray). See README.md in this folder."""

from xlm_core.train.loop import TrainHooks, new_train_state, train, update_selection
from xlm_core.train.optim import build_optimizer, inverse_sqrt_factor

__all__ = ["TrainHooks", "build_optimizer", "inverse_sqrt_factor", "new_train_state", "train", "update_selection"]
