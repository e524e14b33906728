"""maskops: face-mask detection and its MLOps life cycle."""

__version__ = "0.1.0"
