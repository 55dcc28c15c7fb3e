"""Experiment trackers (`--log tensorboard|wandb|mlflow`): a finished run's numbers, read from its run directory,
logged to TensorBoard, Weights & Biases or MLflow. Each tracker is an optional extra; evalkit runs without them.

Modules: `config` (the flags, light to import), `record` (what is logged, computed from the stored run), `base` (the
`Tracker` plug-in point, the registry and `check_trackers`), one module per tracker, `log` (`log_run`).
"""
