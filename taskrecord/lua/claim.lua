-- CLAIM (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there).
-- ARGV[5..]: worker, lease_seconds, token, dispatch ('' = any), the message's delivery tag
-- ('' = none).
-- Returns {outcome, ...}; on 'claimed' the task's fields follow.
-- The message has reached its claim: from here on the task record says what becomes of the
-- task (a lease, a parked wait woken by a new message, an end, another dispatch), so kombu's
-- unacked copy of the message goes now and its ack has nothing left to remove (the worker's
-- transport skips that round trip: taskrecord.settled_messages). A worker that dies after
-- this call is covered by its lease, or a task left queued by maintenance's lost-message
-- sweep (tasks.lost_messages); one that dies before, by that unacked copy (tasks.orphans).
if ARGV[9] ~= '' then
  redis.call('HDEL', UNACKED, ARGV[9])
  redis.call('ZREM', UNACKED_INDEX, ARGV[9])
end
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
    -- A V1 slot reserved for it when it was woken goes back (maintenance passes it on).
    redis.call('ZREM', SLOTS, TASK_ID)
    redis.call('ZREM', tenant_slots(tenant_of(TK)), TASK_ID)
    return {'wait_session'}
  end
end
-- V1's capacity is a budget: never more runs than slots (nor than the tenant's own cap);
-- the rest wait in their tenant's list and are woken by fair share as slots free up.
local lease_until = t + tonumber(ARGV[6])
local tenant = tenant_of(TK)
redis.call('ZREMRANGEBYSCORE', SLOTS, '-inf', t)
if not redis.call('ZSCORE', SLOTS, TASK_ID)
    and (redis.call('ZCARD', SLOTS) >= SLOT_LIMIT or tenant_at_cap(TK, tenant, t, 0)) then
  redis.call('HSET', TK, 'parked', 'capacity')
  enqueue_wait(TK, TASK_ID, wait_rank(TK))
  return {'wait_capacity'}
end
redis.call('ZADD', SLOTS, lease_until, TASK_ID)
redis.call('ZADD', tenant_slots(tenant), lease_until, TASK_ID)
redis.call('EXPIRE', tenant_slots(tenant), math.ceil(tonumber(ARGV[6])) + 60)
leave_wait(TK, TASK_ID)
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
