"""Errors in programs, reported by the checker, the compiler and the executor.

- ProgramError            one problem in a program; many are collected by ``check``
  (``code``, ``pointer`` into the program, ``message``, ``hint``, ``file``, ``line``)
- ProgramInvalid          raised when a program with errors is used; carries the list
- RunError                a run failed (``code`` such as ``output.invalid``,
  ``output.truncated``, ``limit.token_budget``, ``engine.error``); ``retryable`` says
  whether trying again may help
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ProgramError", "ProgramInvalid", "RunError"]


@dataclass
class ProgramError:
    code: str
    pointer: str
    message: str
    hint: str = ""
    file: str | None = None
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}

    def __str__(self) -> str:
        where = f"{self.file or '<program>'}:{self.line or 1}"
        text = f"{where}: {self.code} at {self.pointer or '/'}: {self.message}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text


class ProgramInvalid(Exception):
    def __init__(self, errors: list[ProgramError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


class RunError(Exception):
    def __init__(
        self,
        code: str,
        message: str,
        *,
        step: str | None = None,
        retryable: bool = False,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.step = step
        self.retryable = retryable
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.step:
            out["step"] = self.step
        if self.retryable:
            out["retryable"] = True
        if self.details is not None:
            out["details"] = self.details
        return out
