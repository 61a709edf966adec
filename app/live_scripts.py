"""Lua scripts that move a task's live record in Redis from one state to the next.

Every transition and the event it emits happen in one script, so the event log can never
disagree with the state and a task can never get two terminal events: a script that would
end a task does nothing when the task has already ended.
"""

from __future__ import annotations

# Shared prelude: helpers every script may use.
_PRELUDE = r"""
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function is_terminal(st)
  return st == 'succeeded' or st == 'failed' or st == 'cancelled' or st == 'timed_out'
end
-- Append one event to the task's stream and announce it; returns its seq.
-- route = tenant .. '\n' .. agent .. '\n' .. session, so gateways can fan out by session.
local function emit(task_key, events_key, task_id, etype, data, maxlen, channel, route)
  local seq = redis.call('HINCRBY', task_key, 'seq', 1)
  local ts = string.format('%.6f', now())
  local ev = '{"type":"' .. etype .. '","task_id":"' .. task_id .. '","seq":' .. seq ..
    ',"ts":' .. ts .. ',"data":' .. data .. '}'
  redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '0-' .. seq, 'e', ev)
  redis.call('PUBLISH', channel, route .. '\n' .. ev)
  return seq
end
local function route_of(task_key)
  local r = redis.call('HMGET', task_key, 'tenant', 'agent_id', 'session_id')
  return (r[1] or '') .. '\n' .. (r[2] or '') .. '\n' .. (r[3] or '')
end
local function expire_all(ttl, ...)
  for _, k in ipairs({...}) do redis.call('EXPIRE', k, ttl) end
end
"""

# KEYS: task, events, deadlines, dispatch_due. ARGV: task_id, ttl, maxlen, channel,
# queued_data, deadline, publish_grace, field, value, ...
CREATE = (
    _PRELUDE
    + r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[3], tonumber(ARGV[6]), ARGV[1])
redis.call('ZADD', KEYS[4], now() + tonumber(ARGV[7]), ARGV[1])
emit(KEYS[1], KEYS[2], ARGV[1], 'queued', ARGV[5], ARGV[3], ARGV[4], route_of(KEYS[1]))
expire_all(tonumber(ARGV[2]), KEYS[1], KEYS[2])
return 1
"""
)

# KEYS: task, events, leases. ARGV: task_id, worker, lease_seconds, token, dispatch,
# maxlen, channel. Returns {outcome, ...}; on 'claimed' the task's fields follow.
CLAIM = (
    _PRELUDE
    + r"""
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {'missing'} end
if is_terminal(st) then return {'terminal', st} end
if ARGV[5] ~= '' and redis.call('HGET', KEYS[1], 'dispatch') ~= ARGV[5] then
  return {'stale'}
end
if st == 'paused' then
  redis.call('HSET', KEYS[1], 'parked', '1')
  return {'paused'}
end
local t = now()
if st == 'running' then
  local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0') or 0
  if lease > t then return {'duplicate'} end
  if redis.call('HGET', KEYS[1], 'answered') == '1' then return {'lost_after_output'} end
end
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then return {'cancel_requested'} end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
local lease_until = t + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'running', 'worker', ARGV[2], 'attempt_token', ARGV[4],
  'lease_until', string.format('%.3f', lease_until), 'answered', '0', 'output_started', '0',
  'attempt_started_at', string.format('%.6f', t), 'parked', '0')
if not redis.call('HGET', KEYS[1], 'started_at') then
  redis.call('HSET', KEYS[1], 'started_at', string.format('%.6f', t))
end
redis.call('ZADD', KEYS[3], lease_until, ARGV[1])
emit(KEYS[1], KEYS[2], ARGV[1], 'started', '{"attempt":' .. attempt .. '}', ARGV[6], ARGV[7],
  route_of(KEYS[1]))
local out = {'claimed'}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do out[#out + 1] = v end
return out
"""
)

# KEYS: task, leases. ARGV: task_id, token, lease_seconds.
# Returns 'lost' (another attempt owns the task, or it ended), 'cancel' or 'ok'.
RENEW = (
    _PRELUDE
    + r"""
local r = redis.call('HMGET', KEYS[1], 'state', 'attempt_token', 'cancel_requested')
if r[1] ~= 'running' or r[2] ~= ARGV[2] then return 'lost' end
local lease_until = now() + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'lease_until', string.format('%.3f', lease_until))
redis.call('ZADD', KEYS[2], lease_until, ARGV[1])
if r[3] == '1' then return 'cancel' end
return 'ok'
"""
)

# KEYS: task. ARGV: token. V1 answered (HTTP 200): a re-run could repeat its side effects.
MARK_ANSWERED = r"""
if redis.call('HGET', KEYS[1], 'attempt_token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'answered', '1')
return 1
"""

# KEYS: task, events, partial. ARGV: task_id, token, delta, data, maxlen, channel, ttl.
PROGRESS = (
    _PRELUDE
    + r"""
local r = redis.call('HMGET', KEYS[1], 'state', 'attempt_token')
if r[1] ~= 'running' or r[2] ~= ARGV[2] then return -1 end
redis.call('APPEND', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[7]))
redis.call('HSET', KEYS[1], 'output_started', '1', 'answered', '1')
return emit(KEYS[1], KEYS[2], ARGV[1], 'progress', ARGV[4], ARGV[5], ARGV[6], route_of(KEYS[1]))
"""
)

# KEYS: task, events, partial, leases, deadlines, dispatch_due.
# ARGV: task_id, token ('' = whoever), state, result_json, error_json, reason, result_ttl,
# maxlen, channel, only_from ('' = any live state).
# Returns {1, partial} when it ended the task, {0, state} when it had already ended or
# does not exist, {-1, ''} when another attempt owns it, {-2, state} when only_from differs.
FINALIZE = (
    _PRELUDE
    + r"""
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {0, ''} end
if is_terminal(st) then return {0, st} end
if ARGV[10] ~= '' and st ~= ARGV[10] then return {-2, st} end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'attempt_token') ~= ARGV[2] then
  return {-1, ''}
end
local partial = redis.call('GET', KEYS[3]) or ''
local state = ARGV[3]
local data
local fields = {'state', state, 'finished_at', string.format('%.6f', now()), 'lease_until', '0'}
if state == 'succeeded' then
  data = '{"result":' .. ARGV[4] .. '}'
  fields[#fields + 1] = 'result'; fields[#fields + 1] = ARGV[4]
elseif state == 'failed' then
  data = '{"error":' .. ARGV[5] .. ',"partial":' .. cjson.encode(partial) .. '}'
  fields[#fields + 1] = 'error'; fields[#fields + 1] = ARGV[5]
else
  data = '{"partial":' .. cjson.encode(partial) .. ',"reason":' .. cjson.encode(ARGV[6]) .. '}'
  fields[#fields + 1] = 'error'; fields[#fields + 1] = ARGV[5]
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
emit(KEYS[1], KEYS[2], ARGV[1], state, data, ARGV[8], ARGV[9], route_of(KEYS[1]))
expire_all(tonumber(ARGV[7]), KEYS[1], KEYS[2], KEYS[3])
return {1, partial}
"""
)

# KEYS: task, events, leases, partial, dispatch_due. ARGV: task_id, token, delay, error_json,
# maxlen, channel, queue. Puts a failed attempt back to `queued` with a new dispatch number,
# due for publishing after `delay` (maintenance publishes it then; no ETA messages held in
# a worker's memory). Returns the new dispatch number, or -1 when another attempt owns it.
REQUEUE = (
    _PRELUDE
    + r"""
local r = redis.call('HMGET', KEYS[1], 'state', 'attempt_token', 'attempts')
if is_terminal(r[1] or 'succeeded') then return -1 end
if ARGV[2] ~= '' and r[2] ~= ARGV[2] then return -1 end
local dispatch = redis.call('HINCRBY', KEYS[1], 'dispatch', 1)
redis.call('HSET', KEYS[1], 'state', 'queued', 'lease_until', '0', 'attempt_token', '',
  'queue', ARGV[7], 'answered', '0', 'output_started', '0')
redis.call('DEL', KEYS[4])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[5], now() + tonumber(ARGV[3]), ARGV[1])
emit(KEYS[1], KEYS[2], ARGV[1], 'retrying', '{"attempt":' .. (r[3] or '0') ..
  ',"delay_seconds":' .. ARGV[3] .. ',"queue":"' .. ARGV[7] .. '","error":' .. ARGV[4] .. '}',
  ARGV[5], ARGV[6], route_of(KEYS[1]))
return dispatch
"""
)

# KEYS: task, events, partial, leases, deadlines, dispatch_due.
# ARGV: task_id, reason, result_ttl, maxlen, channel, control_channel.
# Queued/paused: cancelled now. Running: flagged, the worker stops it.
CANCEL = (
    _PRELUDE
    + r"""
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return 'missing' end
if is_terminal(st) then return 'terminal:' .. st end
if st == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1', 'cancel_reason', ARGV[2])
  redis.call('PUBLISH', ARGV[6], 'cancel ' .. ARGV[1])
  return 'requested'
end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', string.format('%.6f', now()),
  'error', cjson.encode({type = 'cancelled', message = ARGV[2]}))
emit(KEYS[1], KEYS[2], ARGV[1], 'cancelled', '{"partial":"","reason":' ..
  cjson.encode(ARGV[2]) .. '}', ARGV[4], ARGV[5], route_of(KEYS[1]))
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
expire_all(tonumber(ARGV[3]), KEYS[1], KEYS[2], KEYS[3])
return 'cancelled'
"""
)

# KEYS: task, leases. ARGV: task_id, fence_token.
# A running task whose lease ran out (its worker died or froze): fence the old attempt off
# (its renewals and progress writes now fail) and say what to do with the task.
# Returns {action, attempts, queue}: action is 'gone' (not running / lease renewed),
# 'cancel', 'lost_after_output' or 'requeue'.
RECOVER = (
    _PRELUDE
    + r"""
local r = redis.call('HMGET', KEYS[1], 'state', 'lease_until', 'answered', 'cancel_requested',
  'attempts', 'queue')
if r[1] ~= 'running' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {'gone', '0', ''}
end
if (tonumber(r[2] or '0') or 0) > now() then return {'gone', '0', ''} end
redis.call('HSET', KEYS[1], 'attempt_token', ARGV[2])
local action = 'requeue'
if r[4] == '1' then action = 'cancel' elseif r[3] == '1' then action = 'lost_after_output' end
return {action, r[5] or '0', r[6] or 'short'}
"""
)
