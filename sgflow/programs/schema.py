"""The published JSON Schema of the program format (``programs/program.schema.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sgflow.programs.model import Program

__all__ = ["SCHEMA_PATH", "program_schema", "program_schema_text", "write_program_schema"]

SCHEMA_PATH = Path(__file__).with_name("program.schema.json")


def program_schema() -> dict[str, Any]:
    schema = Program.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://sgflow.dev/program.schema.json",
        **schema,
    }


def program_schema_text() -> str:
    return json.dumps(program_schema(), indent=2, sort_keys=True) + "\n"


def write_program_schema() -> str:
    SCHEMA_PATH.write_text(program_schema_text(), encoding="utf-8")
    return str(SCHEMA_PATH)
