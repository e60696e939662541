"""Batch fan-out on the workers' side: warm the batch program's shared prefix on the engine,
then send one run message per line still queued.

The batch records, their lines, expiry, finalization and the sweep are the store's
(:mod:`sgflow.store.batches`); this module only adds what needs the engine or Celery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx

from sgflow.store import BatchStore

__all__ = ["fan_out", "warm_prefix"]

log = logging.getLogger("sgflow.workers.batches")


def fan_out(batches: BatchStore, batch_id: str, send: Callable[[str], None]) -> int:
    """Call ``send(run_id)`` for every line of the batch still ``queued``, in input order
    (cancelled or expired lines need no message); returns how many were sent."""
    sent = 0
    for page in batches.queued_lines(batch_id):
        for run_id in page:
            send(run_id)
            sent += 1
    return sent


def warm_prefix(engine_url: str, prefix: str, *, timeout_s: float = 60.0) -> int | None:
    """Prefill ``prefix`` on the engine once (SGLang's ``RuntimeEndpoint.cache_prefix``:
    ``POST /generate`` with ``max_new_tokens: 0``), so a batch's lines find it cached.
    Best effort: returns the prompt tokens the engine reports, or ``None`` on any failure
    (logged, never raised)."""
    try:
        response = httpx.post(
            f"{engine_url.rstrip('/')}/generate",
            json={"text": prefix, "sampling_params": {"max_new_tokens": 0}},
            timeout=timeout_s,
        )
        response.raise_for_status()
        meta = response.json().get("meta_info") or {}
        tokens = meta.get("prompt_tokens")
        return int(tokens) if isinstance(tokens, int) else 0
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        log.warning("warming a batch prefix failed: %s", exc)
        return None
