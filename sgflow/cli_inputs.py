"""``--input K=V`` / ``--inputs FILE`` for every command that takes program inputs.

``K=V`` gives the string V; ``K=@PATH`` the text of a file; ``K:=JSON`` a JSON value (a
number, a list, an object), as httpie spells it. ``--inputs FILE`` is a JSON object the pairs
are merged over. JSON is read with :func:`sgflow.jsonbounds.loads` (bounded depth, numbers,
no NaN or duplicate keys). Raises ``ValueError`` with a message for the user.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sgflow.jsonbounds import loads

__all__ = ["parse_inputs"]


def parse_inputs(pairs: list[str], file: str | None = None) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if file:
        try:
            loaded = loads(Path(file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{file} must hold a JSON object")
        inputs.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or key == ":":
            raise ValueError(f"--input {pair!r} is not K=V, K=@FILE or K:=JSON")
        if key.endswith(":"):
            try:
                inputs[key[:-1]] = loads(value)
            except ValueError as exc:
                raise ValueError(f"--input {pair!r}: not JSON ({exc})") from None
        elif value.startswith("@"):
            try:
                inputs[key] = Path(value[1:]).read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"--input {pair!r}: {exc.strerror}") from None
        else:
            inputs[key] = value
    return inputs
