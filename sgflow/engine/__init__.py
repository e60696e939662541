"""The embedded engine: SGLang's native HTTP API on llama.cpp, for CPU-only hosts.

``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` here, before llama.cpp (and its OpenMP runtime,
which reads the variable once, when it loads) is imported: GNU OpenMP's threads otherwise
spin while they wait, and beside other busy processes (workers, the API, a second engine)
a 721-token prompt then took 55.6 s instead of 7.7 s (median of 3, 2026-12-01; idle: 4.3 s
vs 4.6 s). A value set by the user wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from sgflow.engine.engine import Engine, EngineConfig
from sgflow.engine.errors import BadRequest, ConstraintError, ContextOverflow, EngineError

__all__ = [
    "BadRequest",
    "ConstraintError",
    "ContextOverflow",
    "Engine",
    "EngineConfig",
    "EngineError",
]
