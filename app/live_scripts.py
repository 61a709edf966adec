"""Lua scripts that move a task's live record in Redis from one state to the next.

Every transition and the event it emits happen in one script, so the event log can never
disagree with the state, and a task can never get two terminal events: a script that would
end a task does nothing when the task has already ended.

The same scripts are the scheduler's admission control: a task may run only when it is the
oldest live task of its (agent, session) and a V1 slot is free. Otherwise it is *parked*
(its Celery message is consumed) and woken, with a fresh dispatch number, when the task
holding it back releases what it held.

Calling convention (see `app.live.LiveCalls`): KEYS[1] is the task's hash; ARGV[1] the task
id, ARGV[2] the event-log bound, ARGV[3] the V1 slot limit, ARGV[4] the V1 budget's name;
script-specific arguments follow from ARGV[5]. Other key names derive from the prefix
(single Redis/Valkey server; not Redis Cluster).
"""

from __future__ import annotations

from app import keys

_PRELUDE = (
    r"""
local P = '"""
    + keys.PREFIX
    + r""":'
local TASK_ID, MAXLEN, SLOT_LIMIT, BUDGET = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local TK = KEYS[1]
local EVENTS = P .. 'events:' .. TASK_ID
local PARTIAL = P .. 'partial:' .. TASK_ID
local CHANNEL, CONTROL = P .. 'events', P .. 'control'
local LEASES, DEADLINES, DUE = P .. 'leases', P .. 'deadlines', P .. 'dispatch-due'
local SLOTS, WAIT = P .. 'v1slots:' .. BUDGET, P .. 'v1wait:' .. BUDGET

local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.6f', x) end
local function is_terminal(st)
  return st == 'succeeded' or st == 'failed' or st == 'cancelled' or st == 'timed_out'
end
local function session_key(tk)
  local r = redis.call('HMGET', tk, 'agent_id', 'session_id')
  if not r[2] or r[2] == '' then return nil end
  return P .. 'session:' .. (r[1] or '') .. ':' .. r[2]
end
-- Append an event to a task's stream and announce it (route lets gateways fan out by
-- session without parsing): returns its seq.
local function emit_for(tk, id, etype, data)
  local seq = redis.call('HINCRBY', tk, 'seq', 1)
  local ev = '{"type":"' .. etype .. '","task_id":"' .. id .. '","seq":' .. seq ..
    ',"ts":' .. fmt(now()) .. ',"data":' .. data .. '}'
  redis.call('XADD', P .. 'events:' .. id, 'MAXLEN', '~', MAXLEN, '0-' .. seq, 'e', ev)
  local r = redis.call('HMGET', tk, 'tenant', 'agent_id', 'session_id')
  redis.call('PUBLISH', CHANNEL, (r[1] or '') .. '\n' .. (r[2] or '') .. '\n' ..
    (r[3] or '') .. '\n' .. ev)
  return seq
end
local function emit(etype, data) return emit_for(TK, TASK_ID, etype, data) end
local function expire_task(ttl)
  for _, k in ipairs({TK, EVENTS, PARTIAL}) do redis.call('EXPIRE', k, ttl) end
end
-- A parked task gets a new dispatch number and is due for publishing now.
local function wake(id, woken)
  local tk = P .. 'task:' .. id
  local r = redis.call('HMGET', tk, 'state', 'parked')
  if r[1] == 'queued' and r[2] and r[2] ~= '' then
    redis.call('HSET', tk, 'parked', '')
    redis.call('HINCRBY', tk, 'dispatch', 1)
    redis.call('ZADD', DUE, now(), id)
    woken[#woken + 1] = id
    return true
  end
  return false
end
local function wait_rank(tk)
  local r = redis.call('HMGET', tk, 'priority', 'created_at')
  return (10 - tonumber(r[1] or '5')) * 1e10 + tonumber(r[2] or '0')
end
-- Give back the V1 slot (and, unless keep_session, the task's place in its session),
-- then wake whoever can run now. Returns the ids woken.
local function release(keep_session)
  local woken = {}
  redis.call('ZREM', SLOTS, TASK_ID)
  redis.call('ZREM', WAIT, TASK_ID)
  local sk = session_key(TK)
  if sk and not keep_session then
    local before = redis.call('ZRANGE', sk, 0, 0)[1]
    redis.call('ZREM', sk, TASK_ID)
    local head = redis.call('ZRANGE', sk, 0, 0)[1]
    if head and head ~= before then wake(head, woken) end
  end
  redis.call('ZREMRANGEBYSCORE', SLOTS, '-inf', now())
  local free = SLOT_LIMIT - redis.call('ZCARD', SLOTS)
  while free > 0 do
    local w = redis.call('ZPOPMIN', WAIT)
    if #w == 0 then break end
    if wake(w[1], woken) then free = free - 1 end
  end
  return woken
end
local function ended(st, ttl, extra)
  local fields = {'state', st, 'finished_at', fmt(now()), 'lease_until', '0', 'parked', ''}
  for _, v in ipairs(extra) do fields[#fields + 1] = v end
  redis.call('HSET', TK, unpack(fields))
  redis.call('ZREM', LEASES, TASK_ID)
  redis.call('ZREM', DEADLINES, TASK_ID)
  redis.call('ZREM', DUE, TASK_ID)
  local woken = release(false)
  expire_task(ttl)
  return woken
end
"""
)


def _script(body: str) -> str:
    return _PRELUDE + body


# ARGV[5..]: live_ttl, queued_data, deadline, queue, queue_limit, celery_message,
# field, value, ... The record and its queue message are written together: a task is
# never recorded without being queued, nor queued without a record.
# Returns 1 (accepted), 0 (the id exists) or 'full:<depth>' (nothing written).
CREATE = _script(r"""
if redis.call('EXISTS', TK) == 1 then return 0 end
local depth = redis.call('LLEN', ARGV[8])
if depth >= tonumber(ARGV[9]) then return 'full:' .. depth end
local fields = {}
for i = 11, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', TK, unpack(fields))
redis.call('ZADD', DEADLINES, tonumber(ARGV[7]), TASK_ID)
redis.call('ZADD', P .. 'unpersisted', now(), TASK_ID)
redis.call('LPUSH', ARGV[8], ARGV[10])
local sk = session_key(TK)
if sk then
  redis.call('ZADD', sk, redis.call('HGET', TK, 'created_at'), TASK_ID)
  redis.call('EXPIRE', sk, tonumber(ARGV[5]))
end
emit('queued', ARGV[6])
redis.call('EXPIRE', TK, tonumber(ARGV[5]))
redis.call('EXPIRE', EVENTS, tonumber(ARGV[5]))
return 1
""")

# ARGV[5..]: worker, lease_seconds, token, dispatch ('' = any).
# Returns {outcome, ...}; on 'claimed' the task's fields follow.
CLAIM = _script(r"""
local st = redis.call('HGET', TK, 'state')
if not st then return {'missing'} end
if is_terminal(st) then return {'terminal', st} end
if ARGV[8] ~= '' and redis.call('HGET', TK, 'dispatch') ~= ARGV[8] then return {'stale'} end
if st == 'paused' then
  redis.call('HSET', TK, 'parked', 'paused')
  return {'paused'}
end
local t = now()
if st == 'running' then
  local lease = tonumber(redis.call('HGET', TK, 'lease_until') or '0') or 0
  if lease > t then return {'duplicate'} end
  if redis.call('HGET', TK, 'answered') == '1' then return {'lost_after_output'} end
end
if redis.call('HGET', TK, 'cancel_requested') == '1' then return {'cancel_requested'} end
-- One run per (agent, session), in submission order: only the oldest live task may run.
local sk = session_key(TK)
if sk then
  redis.call('ZADD', sk, 'NX', redis.call('HGET', TK, 'created_at'), TASK_ID)
  if redis.call('ZRANGE', sk, 0, 0)[1] ~= TASK_ID then
    redis.call('HSET', TK, 'parked', 'session')
    return {'wait_session'}
  end
end
-- V1's capacity is a budget: never more runs than slots; the rest wait here, by
-- priority then age, and are woken as slots free up.
local lease_until = t + tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', SLOTS, '-inf', t)
if not redis.call('ZSCORE', SLOTS, TASK_ID) and redis.call('ZCARD', SLOTS) >= SLOT_LIMIT then
  redis.call('HSET', TK, 'parked', 'capacity')
  redis.call('ZADD', WAIT, wait_rank(TK), TASK_ID)
  return {'wait_capacity'}
end
redis.call('ZADD', SLOTS, lease_until, TASK_ID)
redis.call('ZREM', WAIT, TASK_ID)
local attempt = redis.call('HINCRBY', TK, 'attempts', 1)
redis.call('HSET', TK, 'state', 'running', 'worker', ARGV[5], 'attempt_token', ARGV[7],
  'lease_until', fmt(lease_until), 'answered', '0', 'output_started', '0',
  'attempt_started_at', fmt(t), 'parked', '')
if not redis.call('HGET', TK, 'started_at') then redis.call('HSET', TK, 'started_at', fmt(t)) end
redis.call('ZADD', LEASES, lease_until, TASK_ID)
redis.call('ZREM', DUE, TASK_ID)
emit('started', '{"attempt":' .. attempt .. '}')
local out = {'claimed'}
for _, v in ipairs(redis.call('HGETALL', TK)) do out[#out + 1] = v end
return out
""")

# ARGV[5..]: token, lease_seconds. Returns 'lost', 'cancel' or 'ok'.
RENEW = _script(r"""
local r = redis.call('HMGET', TK, 'state', 'attempt_token', 'cancel_requested')
if r[1] ~= 'running' or r[2] ~= ARGV[5] then return 'lost' end
local lease_until = now() + tonumber(ARGV[6])
redis.call('HSET', TK, 'lease_until', fmt(lease_until))
redis.call('ZADD', LEASES, lease_until, TASK_ID)
redis.call('ZADD', SLOTS, 'XX', lease_until, TASK_ID)
if r[3] == '1' then return 'cancel' end
return 'ok'
""")

# ARGV[5..]: token, delta, data_json, ttl. The first output marks the attempt `answered`:
# from then on a lost worker's task is not re-run (the agent may have acted), the same
# line the retry policy draws. (V1's first, role-only chunk comes before the model runs.)
PROGRESS = _script(r"""
local r = redis.call('HMGET', TK, 'state', 'attempt_token')
if r[1] ~= 'running' or r[2] ~= ARGV[5] then return -1 end
redis.call('APPEND', PARTIAL, ARGV[6])
redis.call('EXPIRE', PARTIAL, tonumber(ARGV[8]))
redis.call('HSET', TK, 'output_started', '1', 'answered', '1')
return emit('progress', ARGV[7])
""")

# ARGV[5..]: token ('' = whoever), state, result_json, error_json, reason, result_ttl,
# only_from ('' = any live state).
# Returns {code, detail, woken...}: code 1 ended it (detail = partial output), 0 it had
# already ended or does not exist (detail = state), -1 another attempt owns it, -2 it is
# not in only_from.
FINALIZE = _script(r"""
local st = redis.call('HGET', TK, 'state')
if not st then return {0, ''} end
if is_terminal(st) then return {0, st} end
if ARGV[11] ~= '' and st ~= ARGV[11] then return {-2, st} end
if ARGV[5] ~= '' and redis.call('HGET', TK, 'attempt_token') ~= ARGV[5] then return {-1, ''} end
local partial = redis.call('GET', PARTIAL) or ''
local state = ARGV[6]
local data, extra
if state == 'succeeded' then
  data = '{"result":' .. ARGV[7] .. '}'
  extra = {'result', ARGV[7]}
elseif state == 'failed' then
  data = '{"error":' .. ARGV[8] .. ',"partial":' .. cjson.encode(partial) .. '}'
  extra = {'error', ARGV[8]}
else
  data = '{"partial":' .. cjson.encode(partial) .. ',"reason":' .. cjson.encode(ARGV[9]) .. '}'
  extra = {'error', ARGV[8]}
end
emit(state, data)
local out = {1, partial}
for _, id in ipairs(ended(state, tonumber(ARGV[10]), extra)) do out[#out + 1] = id end
return out
""")

# ARGV[5..]: token ('' = whoever), delay, error_json, queue.
# A failed attempt goes back to `queued` with a new dispatch number, due after `delay`
# (maintenance publishes it: no ETA message sits in a worker's memory). It keeps its
# place in its session. Returns {dispatch or -1, woken...}.
REQUEUE = _script(r"""
local r = redis.call('HMGET', TK, 'state', 'attempt_token', 'attempts')
if not r[1] or is_terminal(r[1]) then return {-1} end
if ARGV[5] ~= '' and r[2] ~= ARGV[5] then return {-1} end
local dispatch = redis.call('HINCRBY', TK, 'dispatch', 1)
redis.call('HSET', TK, 'state', 'queued', 'lease_until', '0', 'attempt_token', '',
  'queue', ARGV[8], 'answered', '0', 'output_started', '0', 'parked', '')
redis.call('DEL', PARTIAL)
redis.call('ZREM', LEASES, TASK_ID)
redis.call('ZADD', DUE, now() + tonumber(ARGV[6]), TASK_ID)
emit('retrying', '{"attempt":' .. (r[3] or '0') .. ',"delay_seconds":' .. ARGV[6] ..
  ',"queue":"' .. ARGV[8] .. '","error":' .. ARGV[7] .. '}')
local out = {dispatch}
for _, id in ipairs(release(true)) do out[#out + 1] = id end
return out
""")

# ARGV[5..]: reason, result_ttl. Queued/paused: cancelled now. Running: flagged, and the
# worker stops it. Returns {outcome, woken...}.
CANCEL = _script(r"""
local st = redis.call('HGET', TK, 'state')
if not st then return {'missing'} end
if is_terminal(st) then return {'terminal:' .. st} end
if st == 'running' then
  redis.call('HSET', TK, 'cancel_requested', '1', 'cancel_reason', ARGV[5])
  redis.call('PUBLISH', CONTROL, 'cancel ' .. TASK_ID)
  return {'requested'}
end
emit('cancelled', '{"partial":"","reason":' .. cjson.encode(ARGV[5]) .. '}')
local out = {'cancelled'}
local extra = {'error', cjson.encode({type = 'cancelled', message = ARGV[5]})}
for _, id in ipairs(ended('cancelled', tonumber(ARGV[6]), extra)) do out[#out + 1] = id end
return out
""")

# ARGV[5..]: fence_token. A running task whose lease ran out (its worker died or froze):
# fence the old attempt off (its renewals and writes now fail) and say what to do.
# Returns {action, attempts, queue}: action is 'gone' (not running / lease renewed),
# 'cancel', 'lost_after_output' or 'requeue'.
RECOVER = _script(r"""
local r = redis.call('HMGET', TK, 'state', 'lease_until', 'answered', 'cancel_requested',
  'attempts', 'queue')
if r[1] ~= 'running' then
  redis.call('ZREM', LEASES, TASK_ID)
  return {'gone', '0', ''}
end
if (tonumber(r[2] or '0') or 0) > now() then return {'gone', '0', ''} end
redis.call('HSET', TK, 'attempt_token', ARGV[5])
local action = 'requeue'
if r[4] == '1' then action = 'cancel' elseif r[3] == '1' then action = 'lost_after_output' end
return {action, r[5] or '0', r[6] or 'short'}
""")

# Returns 'paused', or the state that prevents it.
PAUSE = _script(r"""
local st = redis.call('HGET', TK, 'state')
if not st then return 'missing' end
if st ~= 'queued' then return st end
redis.call('HSET', TK, 'state', 'paused')
-- Waiting for a V1 slot: leave that line; resume dispatches it again.
if redis.call('ZREM', WAIT, TASK_ID) == 1 then redis.call('HSET', TK, 'parked', 'paused') end
emit('paused', '{}')
return 'paused'
""")

# Returns {'resumed', dispatch_due(0/1)} or {state}.
RESUME = _script(r"""
local st = redis.call('HGET', TK, 'state')
if not st then return {'missing'} end
if st ~= 'paused' then return {st} end
redis.call('HSET', TK, 'state', 'queued')
emit('resumed', '{}')
local woken = {}
wake(TASK_ID, woken)
return {'resumed', #woken}
""")

# ARGV[5..]: live_ttl, deadline, reason. Manual retry of a failed / cancelled / timed-out
# task: the same task id starts a new attempt. Returns 'queued' or the state found.
RETRY = _script(r"""
local st = redis.call('HGET', TK, 'state')
if not st then return 'missing' end
if st ~= 'failed' and st ~= 'cancelled' and st ~= 'timed_out' then return st end
redis.call('HDEL', TK, 'result', 'error', 'finished_at', 'cancel_requested', 'cancel_reason')
redis.call('HSET', TK, 'state', 'queued', 'parked', '', 'answered', '0', 'output_started', '0',
  'attempt_token', '', 'lease_until', '0', 'created_at', fmt(now()),
  'retry_base', redis.call('HGET', TK, 'attempts') or '0')
redis.call('HINCRBY', TK, 'dispatch', 1)
redis.call('DEL', PARTIAL)
redis.call('ZADD', DEADLINES, tonumber(ARGV[6]), TASK_ID)
redis.call('ZADD', DUE, now(), TASK_ID)
local sk = session_key(TK)
if sk then
  redis.call('ZADD', sk, redis.call('HGET', TK, 'created_at'), TASK_ID)
  redis.call('EXPIRE', sk, tonumber(ARGV[5]))
end
emit('retrying', '{"manual":true,"reason":' .. cjson.encode(ARGV[7]) .. '}')
redis.call('EXPIRE', TK, tonumber(ARGV[5]))
redis.call('EXPIRE', EVENTS, tonumber(ARGV[5]))
return 'queued'
""")

# Maintenance: a task due for publishing. Returns {'publish', queue, dispatch} when it
# is queued, {'skip'} otherwise (a paused task is parked: resume publishes it).
TAKE_DUE = _script(r"""
redis.call('ZREM', DUE, TASK_ID)
local r = redis.call('HMGET', TK, 'state', 'queue', 'dispatch')
if r[1] == 'queued' then return {'publish', r[2], r[3]} end
if r[1] == 'paused' then redis.call('HSET', TK, 'parked', 'paused') end
return {'skip'}
""")

# ARGV[5..]: delivery_tag, dispatch, queue, message_json. A message kombu handed to a
# worker (it sits in kombu's `unacked` hash until the task ends: acks_late) whose task was
# never claimed: that worker died between fetching and claiming. Put it back at the head
# of its queue; drop it if it is stale (task ended or re-dispatched). A message whose task
# is running (or held by a live worker) is left alone.
# Returns 'restored', 'dropped' or 'kept'.
RESTORE_ORPHAN = _script(r"""
if redis.call('HEXISTS', 'unacked', ARGV[5]) == 0 then
  redis.call('ZREM', 'unacked_index', ARGV[5])
  return 'dropped'
end
local r = redis.call('HMGET', TK, 'state', 'dispatch', 'parked', 'held_until')
local stale = (not r[1]) or is_terminal(r[1]) or r[2] ~= ARGV[6] or (r[3] and r[3] ~= '')
if not stale and r[1] == 'running' then return 'kept' end
if not stale and tonumber(r[4] or '0') > now() then return 'kept' end
redis.call('HDEL', 'unacked', ARGV[5])
redis.call('ZREM', 'unacked_index', ARGV[5])
if stale then return 'dropped' end
redis.call('RPUSH', ARGV[7], ARGV[8])
return 'restored'
""")
