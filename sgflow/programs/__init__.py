"""Declarative programs: the format, the static checker, the compiler and the executor.

A pure library: no HTTP, no Celery, no Redis. The executor talks to an SGLang endpoint.
"""

from sgflow.programs.backend import SgflowEndpoint
from sgflow.programs.checker import ProgramLimits, check_program, load_program, parse_program
from sgflow.programs.compiler import compile_program
from sgflow.programs.errors import ProgramError, ProgramInvalid, RunError
from sgflow.programs.executor import RunResult, StepTrace, execute
from sgflow.programs.ir import ProgramIR
from sgflow.programs.model import Program

__all__ = [
    "Program",
    "ProgramError",
    "ProgramIR",
    "ProgramInvalid",
    "ProgramLimits",
    "RunError",
    "RunResult",
    "SgflowEndpoint",
    "StepTrace",
    "check_program",
    "compile_program",
    "execute",
    "load_program",
    "parse_program",
]
