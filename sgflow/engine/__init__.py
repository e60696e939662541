"""The embedded engine: SGLang's native HTTP API on llama.cpp, for CPU-only hosts."""

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
