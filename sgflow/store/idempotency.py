"""Idempotency keys: per tenant, the run a key created and the hash of the request body.

``tenant:<t>:idem:<sha256 of the key>`` holds ``{"run": <run id>, "body": <digest>}`` for
:data:`IDEMPOTENCY_TTL_S` (24 h). The same key with the same body answers the same run; with
another body the service answers 409. The key is written by the script that creates the run
(:func:`sgflow.store.runs.submit`), so two requests racing with one key create one run;
:func:`lookup` lets the API answer a replay before it does any other work.

Operations (see :mod:`sgflow.store.ops`).
"""

from __future__ import annotations

import json

from sgflow.store.ops import Op, call
from sgflow.store.records import Keys, as_str

__all__ = ["IDEMPOTENCY_TTL_S", "lookup"]

IDEMPOTENCY_TTL_S = 24 * 3600


def lookup(keys: Keys, tenant: str, key: str) -> Op[tuple[str, str] | None]:
    """``(run id, body digest)`` remembered for ``tenant``'s ``key``, or None."""
    raw = yield call("get", keys.idempotency(tenant, key))
    if raw is None:
        return None
    saved = json.loads(as_str(raw))
    return str(saved["run"]), str(saved["body"])
