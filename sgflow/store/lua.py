"""The Lua scripts behind every state change of the run store.

Each script runs atomically in Redis, so a check ("is this attempt still the holder?") and
the write it guards can never be separated by another client's write: that is the fencing.
Times come in as ARGV from the store's clock (never Redis ``TIME``), so tests can drive a
fake clock and every worker compares leases on one scale.

Scripts that can finish a run share the KEYS layout of :meth:`Keys.terminal`:
``run, steps, events, running, queued, active[, batch lines, batch counts]`` (the batch pair
only when the run has a parent), and :data:`PRELUDE`'s ``finalize`` writes the result, the
``run.finished`` event, the TTLs and the batch line in one go.

The per-tenant concurrency cap is counted here too, so it is atomic and exact: :data:`CREATE`
increments the tenant's field of ``active`` only if it is under the cap (else it refuses,
creating nothing) and marks the run ``counted``; ``finalize``, the one place every path that
ends a run goes through (a worker's finish, a cancel of a queued run, a claim or the reaper
giving up, a deadline), decrements it once and clears the mark. Batch lines are created
uncounted: the batch's own limits admit them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sgflow.store.ops import Lua

__all__ = [
    "APPEND_EVENT",
    "CHECKPOINT",
    "CLAIM",
    "CREATE",
    "EXPIRE_QUEUED",
    "FINISH",
    "HEARTBEAT",
    "MARK_LINE",
    "REAP",
    "REQUEST_CANCEL",
    "RunScripts",
    "run_scripts",
    "with_prelude",
]

# __MAXLEN__ is replaced by the store's event cap.
PRELUDE = r"""
local function fence(run, attempt)
  local f = redis.call('HMGET', run, 'status', 'attempt')
  if not f[1] then return 'not_found' end
  if f[2] ~= attempt or f[1] == 'queued' then return 'lease_lost' end
  if f[1] ~= 'running' then return 'already_finished' end
  return false
end

local function event(stream, kind, data)
  return redis.call('XADD', stream, 'MAXLEN', '~', __MAXLEN__, '*', 'kind', kind, 'data', data)
end

local function mark_line(lines, counts, id, status)
  if redis.call('HSETNX', lines, id, status) == 0 then return 0 end
  local bucket = 'failed'
  if status == 'succeeded' then bucket = 'completed' end
  redis.call('HINCRBY', counts, bucket, 1)
  return 1
end

local function release(run, active)
  local f = redis.call('HMGET', run, 'counted', 'tenant')
  if f[1] ~= '1' then return end
  redis.call('HSET', run, 'counted', '0')
  if redis.call('HINCRBY', active, f[2], -1) <= 0 then redis.call('HDEL', active, f[2]) end
end

local function finalize(id, status, now, output, err, ttl)
  local attempt = redis.call('HGET', KEYS[1], 'attempt')
  release(KEYS[1], KEYS[6])
  redis.call('HSET', KEYS[1], 'status', status, 'finished_at', now, 'lease_until', '',
    'output', output, 'error', err)
  redis.call('ZREM', KEYS[4], id)
  redis.call('ZREM', KEYS[5], id)
  local e = err
  if e == '' then e = 'null' end
  event(KEYS[3], 'run.finished',
    '{"status":"' .. status .. '","attempt":' .. attempt .. ',"error":' .. e .. '}')
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl) end
  if KEYS[8] then mark_line(KEYS[7], KEYS[8], id, status) end
end
"""

# KEYS run, events, tenant runs, queued, deadlines, active[, idempotency key]. ARGV id,
# created_at, tenant, cap ('' = not counted), idempotency value, its TTL, replace ('1': the
# key's run is gone, take the key over), then field/value pairs (a non-empty ``deadline_at``
# among them indexes the run in ``deadlines``). Returns {outcome, detail}: created | exists
# (HGETALL of the run), idempotent (the key's value), limited (the tenant's active runs).
CREATE = r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists', redis.call('HGETALL', KEYS[1])} end
if KEYS[7] and ARGV[7] ~= '1' then
  local saved = redis.call('GET', KEYS[7])
  if saved then return {'idempotent', saved} end
end
local counted = '0'
if ARGV[4] ~= '' then
  local active = tonumber(redis.call('HGET', KEYS[6], ARGV[3]) or '0')
  if active >= tonumber(ARGV[4]) then return {'limited', tostring(active)} end
  redis.call('HINCRBY', KEYS[6], ARGV[3], 1)
  counted = '1'
end
redis.call('HSET', KEYS[1], 'counted', counted, unpack(ARGV, 8))
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
local deadline = redis.call('HGET', KEYS[1], 'deadline_at')
if deadline and deadline ~= '' then redis.call('ZADD', KEYS[5], deadline, ARGV[1]) end
if KEYS[7] then redis.call('SET', KEYS[7], ARGV[5], 'EX', ARGV[6]) end
event(KEYS[2], 'run.queued', '{}')
return {'created', redis.call('HGETALL', KEYS[1])}
"""

# KEYS terminal. ARGV id, worker, now, lease_until, max_attempts, ttl, max_attempts error,
# worker as JSON, deadline error. Returns {outcome, attempt}.
CLAIM = r"""
local f = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'lease_until',
  'cancel_requested', 'started_at', 'deadline_at')
if not f[1] then return {'not_found', 0} end
local now = tonumber(ARGV[3])
if f[1] == 'running' then
  if (tonumber(f[3]) or 0) > now then return {'busy', 0} end
elseif f[1] ~= 'queued' then
  return {'finished', 0}
end
if f[4] == '1' then
  finalize(ARGV[1], 'cancelled', ARGV[3], '', '', ARGV[6])
  return {'cancelled', 0}
end
if (tonumber(f[6]) or math.huge) <= now then
  finalize(ARGV[1], 'failed', ARGV[3], '', ARGV[9], ARGV[6])
  return {'deadline_exceeded', 0}
end
local attempt = tonumber(f[2]) + 1
if attempt > tonumber(ARGV[5]) then
  finalize(ARGV[1], 'failed', ARGV[3], '', ARGV[7], ARGV[6])
  return {'max_attempts', 0}
end
redis.call('HSET', KEYS[1], 'status', 'running', 'attempt', tostring(attempt),
  'lease_until', ARGV[4], 'worker', ARGV[2])
if f[5] == '' then redis.call('HSET', KEYS[1], 'started_at', ARGV[3]) end
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
event(KEYS[3], 'run.started', '{"attempt":' .. attempt .. ',"worker":' .. ARGV[8] .. '}')
return {'claimed', attempt}
"""

# KEYS run, running. ARGV id, attempt, lease_until. 1 if the lease was extended.
HEARTBEAT = r"""
local f = redis.call('HMGET', KEYS[1], 'status', 'attempt')
if f[1] ~= 'running' or f[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'lease_until', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

# KEYS run, steps. ARGV attempt, step id, checkpoint JSON. {outcome, written}.
CHECKPOINT = r"""
local bad = fence(KEYS[1], ARGV[1])
if bad then return {bad, 0} end
return {'ok', redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3])}
"""

# KEYS run, events. ARGV attempt ('' = unfenced), kind, data JSON. {outcome, event id}.
APPEND_EVENT = r"""
if ARGV[1] ~= '' then
  local bad = fence(KEYS[1], ARGV[1])
  if bad then return {bad, ''} end
elseif redis.call('EXISTS', KEYS[1]) == 0 then
  return {'not_found', ''}
end
return {'ok', event(KEYS[2], ARGV[2], ARGV[3])}
"""

# KEYS terminal. ARGV id, attempt, status, now, output JSON, error JSON, ttl.
FINISH = r"""
local bad = fence(KEYS[1], ARGV[2])
if bad then return bad end
finalize(ARGV[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
return 'ok'
"""

# KEYS terminal. ARGV id, now, ttl.
REQUEST_CANCEL = r"""
local f = redis.call('HMGET', KEYS[1], 'status', 'cancel_requested')
if not f[1] then return 'not_found' end
if f[1] == 'queued' then
  finalize(ARGV[1], 'cancelled', ARGV[2], '', '', ARGV[3])
  return 'cancelled'
end
if f[1] ~= 'running' then return 'finished' end
if f[2] ~= '1' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  event(KEYS[3], 'run.cancel_requested', '{}')
end
return 'requested'
"""

# KEYS terminal. ARGV id, now, max_attempts, ttl, max_attempts error, deadline error.
REAP = r"""
local f = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'lease_until', 'cancel_requested',
  'deadline_at')
if f[1] ~= 'running' then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 'skipped'
end
if (tonumber(f[3]) or 0) > tonumber(ARGV[2]) then return 'skipped' end
if f[4] == '1' then
  finalize(ARGV[1], 'cancelled', ARGV[2], '', '', ARGV[4])
  return 'cancelled'
end
if (tonumber(f[5]) or math.huge) <= tonumber(ARGV[2]) then
  finalize(ARGV[1], 'failed', ARGV[2], '', ARGV[6], ARGV[4])
  return 'deadline_exceeded'
end
if tonumber(f[2]) >= tonumber(ARGV[3]) then
  finalize(ARGV[1], 'failed', ARGV[2], '', ARGV[5], ARGV[4])
  return 'failed'
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'lease_until', '', 'worker', '')
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
event(KEYS[3], 'run.requeued', '{"attempt":' .. f[2] .. '}')
return 'requeued'
"""

# KEYS terminal. ARGV id, now, ttl, deadline error. Fails a run still queued at or past its
# deadline; 'skipped' for any other run (running runs check their deadline themselves).
EXPIRE_QUEUED = r"""
local f = redis.call('HMGET', KEYS[1], 'status', 'deadline_at')
if f[1] ~= 'queued' then return 'skipped' end
if (tonumber(f[2]) or math.huge) > tonumber(ARGV[2]) then return 'skipped' end
finalize(ARGV[1], 'failed', ARGV[2], '', ARGV[4], ARGV[3])
return 'deadline_exceeded'
"""

# KEYS batch lines, batch counts. ARGV run id, status. 1 if counted now.
MARK_LINE = r"""
return mark_line(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
"""


def with_prelude(body: str, *, events_maxlen: int) -> str:
    """A script ready to register: the shared helpers, then ``body``."""
    return PRELUDE.replace("__MAXLEN__", str(int(events_maxlen))) + body


@dataclass(frozen=True)
class RunScripts:
    """Every run script, ready to :class:`~sgflow.store.ops.Eval`, for one event cap."""

    create: Lua
    claim: Lua
    heartbeat: Lua
    checkpoint: Lua
    append_event: Lua
    finish: Lua
    request_cancel: Lua
    reap: Lua
    expire_queued: Lua
    mark_line: Lua


@cache
def run_scripts(events_maxlen: int) -> RunScripts:
    """The scripts with ``events_maxlen`` as the event streams' cap (built once per cap)."""

    def lua(body: str) -> Lua:
        return Lua(with_prelude(body, events_maxlen=events_maxlen))

    return RunScripts(
        create=lua(CREATE),
        claim=lua(CLAIM),
        heartbeat=lua(HEARTBEAT),
        checkpoint=lua(CHECKPOINT),
        append_event=lua(APPEND_EVENT),
        finish=lua(FINISH),
        request_cancel=lua(REQUEST_CANCEL),
        reap=lua(REAP),
        expire_queued=lua(EXPIRE_QUEUED),
        mark_line=lua(MARK_LINE),
    )
