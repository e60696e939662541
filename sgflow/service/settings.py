"""Kept for imports: the settings moved to :mod:`sgflow.settings`, which every process reads."""

from sgflow.settings import Settings

__all__ = ["Settings"]
