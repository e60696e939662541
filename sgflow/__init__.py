"""sgflow: checked, queued, validated, cache-aware structured-generation workflows."""

__version__ = "0.1.0"

__all__ = ["__version__"]
