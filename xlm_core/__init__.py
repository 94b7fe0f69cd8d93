"""The pure XLM pretraining library: config, data, model, objectives, training, evaluation, export.

Nothing here imports Prefect; model and data code import neither MLflow nor Ray.
"""
