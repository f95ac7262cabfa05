"""modnas_ops: hardware-aware multi-objective NAS (MODNAS) as an MLflow project."""

__version__ = "0.1.0"
