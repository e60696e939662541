"""Declarative programs: the format, the static checker and the compiler.

A pure library: no HTTP, no Celery, no Redis, no engine. Running a compiled program is
:mod:`sgflow.execution`'s job; talking to each kind of engine, :mod:`sgflow.adapters`'.
"""

from sgflow.programs.checker import ProgramLimits, check_program, load_program, parse_program
from sgflow.programs.compiler import compile_program
from sgflow.programs.errors import ProgramError, ProgramInvalid, RunError
from sgflow.programs.ir import ProgramIR
from sgflow.programs.model import Program

__all__ = [
    "Program",
    "ProgramError",
    "ProgramIR",
    "ProgramInvalid",
    "ProgramLimits",
    "RunError",
    "check_program",
    "compile_program",
    "load_program",
    "parse_program",
]
