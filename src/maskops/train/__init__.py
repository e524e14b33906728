"""Training: the fit loop, checkpoints, MLflow tracking and ``train_task`` (needs torch and mlflow).

Import the submodules directly (``maskops.train.api.train_task``); this package imports nothing
heavy by itself.
"""
