"""Errors in programs, reported by the checker, the compiler and the executor.

Both are :class:`sgflow.errors.SgflowError`\\ s with codes from the one registry:

- ProgramError            one problem in a program; many are collected by ``check``
  (``code``, ``pointer`` into the program, ``message``, ``hint``, ``file``, ``line``)
- ProgramInvalid          raised when a program with errors is used; carries the list
- RunError                a run failed (``code`` such as ``output.invalid``,
  ``output.truncated``, ``limit.token_budget``, ``engine.error``); ``retryable`` says
  whether trying again may help (default: the code's)
"""

from __future__ import annotations

from typing import Any

from sgflow.errors import SgflowError

__all__ = ["ProgramError", "ProgramInvalid", "RunError"]


class ProgramError(SgflowError):
    """One problem at ``pointer`` (JSON pointer into the program, also ``field``) of the
    program in ``file`` (default None), at ``line`` (default None) of its source."""

    def __init__(
        self,
        code: str,
        pointer: str,
        message: str,
        hint: str | None = "",
        file: str | None = None,
        line: int | None = None,
        *,
        limit: Any = None,
    ) -> None:
        super().__init__(code, message, field=pointer, hint=hint, limit=limit)
        self.file = file
        self.line = line

    @property
    def pointer(self) -> str:
        return self.field or ""

    @pointer.setter
    def pointer(self, value: str) -> None:
        self.field = value

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        if self.file is not None:
            body["file"] = self.file
        if self.line is not None:
            body["line"] = self.line
        return body

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProgramError):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = SgflowError.__hash__

    def __str__(self) -> str:
        where = f"{self.file or '<program>'}:{self.line or 1}"
        text = f"{where}: {self.code} at {self.pointer or '/'}: {self.message}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text


class ProgramInvalid(Exception):
    def __init__(self, errors: list[ProgramError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


class RunError(SgflowError):
    """A run failed: ``code``, ``message``, and the ``step`` it failed in (default None),
    ``details`` (default None: e.g. the validation errors of the last attempt)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        step: str | None = None,
        retryable: bool | None = None,
        details: Any = None,
        field: str | None = None,
        limit: Any = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(code, message, field=field, limit=limit, hint=hint, retryable=retryable)
        self.step = step
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        if self.step:
            body["step"] = self.step
        if self.details is not None:
            body["details"] = self.details
        return body
