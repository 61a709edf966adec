-- CREATE (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there).
-- ARGV[5..]: live_ttl, queued_data, deadline, queue, queue_limit, celery_message,
-- tenant, tenant_max_queued, rate_per_second (0: none), burst, if_busy ('' = enqueue,
-- reject, interrupt, replace_queued), due_at (0: now; else when a scheduled run is due,
-- also its field `scheduled_for`), then field, value, ...
-- The record and its queue message are written together: a task is never recorded without
-- being queued (or parked for a V1 slot, or due later), nor queued without a record.
-- Returns 1 (accepted), {1, id...} (accepted; these tasks of its conversation are marked
-- for cancelling by the caller, which cancels them through TaskControl), 0 (the id
-- exists), or, with nothing written: 'busy:<task id>' (if_busy=reject and the conversation
-- has a live task), 'full:<depth>' (the queue is full), 'tenant_full:<unfinished>' (the
-- tenant's quota), 'rate:<seconds until the next submit is allowed>' (the token bucket).
if redis.call('EXISTS', TK) == 1 then return 0 end
local FIELDS = 17
local if_busy, due_at = ARGV[15], tonumber(ARGV[16])
local t = now()
local scheduled = due_at > 0
-- The conversation's busy check reads its live tasks before anything is written, so it
-- needs the session's name from the fields (as session_key() derives it from the hash).
local f = {}
for i = FIELDS, #ARGV, 2 do f[ARGV[i]] = ARGV[i + 1] end
local route = {f.tenant, f.agent_id, f.session_id}
local conv_name = conversation_name(route)
local conv = conv_name and P .. 'session:' .. conv_name
-- The conversation's live tasks that are due (a run scheduled for later is not part of it
-- yet), oldest first, and those `waiting`: all but the one in progress, its head once
-- started (running, or waiting between attempts). Only a conversation's head runs.
local busy, waiting = {}, {}
if conv and if_busy ~= '' and if_busy ~= 'enqueue' then
  for _, id in ipairs(redis.call('ZRANGE', conv, 0, -1)) do
    local r = redis.call('HMGET', P .. 'task:' .. id, 'state', 'attempts', 'scheduled_for')
    local later = r[1] ~= 'running' and (tonumber(r[3] or '0') or 0) > t
    if r[1] and not is_terminal(r[1]) and not later then
      local started = r[1] == 'running' or (tonumber(r[2] or '0') or 0) > 0
      if #busy > 0 or not started then waiting[#waiting + 1] = id end
      busy[#busy + 1] = id
    end
  end
  if if_busy == 'reject' and busy[1] then return 'busy:' .. busy[1] end
end
local depth = redis.call('LLEN', ARGV[8])
if depth >= tonumber(ARGV[9]) then return 'full:' .. depth end
local tenant = ARGV[11]
-- A scheduled task's record must outlive its wait as well as the absolute limit after it.
local live_ttl = tonumber(ARGV[5]) + math.max(0, math.ceil(due_at - t))
local live = P .. 'tenant-live:' .. tenant
local unfinished = redis.call('ZCARD', live)
if unfinished >= tonumber(ARGV[12]) then return 'tenant_full:' .. unfinished end
local rate, burst = tonumber(ARGV[13]), tonumber(ARGV[14])
if rate > 0 then
  -- Token bucket: `burst` submits at once, refilled at `rate` per second.
  local bucket = P .. 'rate:' .. tenant
  local b = redis.call('HMGET', bucket, 'tokens', 'at')
  local tokens = math.min(burst, (tonumber(b[1]) or burst) + (t - (tonumber(b[2]) or t)) * rate)
  if tokens < 1 then return 'rate:' .. string.format('%.3f', (1 - tokens) / rate) end
  redis.call('HSET', bucket, 'tokens', string.format('%.6f', tokens - 1), 'at', fmt(t))
  redis.call('EXPIRE', bucket, math.ceil(burst / rate) + 60)
end
-- Shared keys keep the longest TTL any of their tasks needs.
local function extend(key, ttl)
  if redis.call('TTL', key) < ttl then redis.call('EXPIRE', key, ttl) end
end
redis.call('HSET', TK, unpack(ARGV, FIELDS))
redis.call('ZADD', DEADLINES, tonumber(ARGV[7]), TASK_ID)
redis.call('ZADD', P .. 'unpersisted', t, TASK_ID)
redis.call('ZADD', live, t, TASK_ID)
extend(live, live_ttl)
if conv then
  -- Its session's line (session_key()), ordered by when each task is due: a run scheduled
  -- for later lets earlier work through.
  redis.call('ZADD', conv, scheduled and fmt(due_at) or f.created_at, TASK_ID)
  extend(conv, live_ttl)
  -- The conversation's newest tasks, live or ended (keys.session_recent_key): what a
  -- session replay lists beside SQL, which a new or just-ended task may not have reached.
  local recent = P .. 'session-recent:' .. conv_name
  redis.call('ZADD', recent, t, TASK_ID)
  redis.call('ZREMRANGEBYRANK', recent, 0, -{{SESSION_RECENT}} - 1)  -- keeps the newest
  extend(recent, live_ttl)
end
-- Tasks this one interrupts or replaces: marked here, in the same step as the check, so
-- none of them can start meanwhile (claim.lua ends a marked task) and a lost gateway still
-- leaves them ending; the caller cancels them at once through TaskControl.
-- interrupt: all of them, so the new task runs next, once the one in progress has ended
-- (it keeps its partial output). replace_queued: all but the one in progress.
local stop = {}
if if_busy == 'interrupt' then
  stop = busy
elseif if_busy == 'replace_queued' then
  stop = waiting
end
local why = (if_busy == 'interrupt' and 'interrupted' or 'replaced') .. ' by task ' .. TASK_ID
for _, id in ipairs(stop) do
  redis.call('HSET', P .. 'task:' .. id, 'cancel_requested', '1', 'cancel_reason', why)
end
if scheduled then
  -- Waits in Redis, not in the broker nor a worker: maintenance publishes it when due.
  redis.call('ZADD', DUE, due_at, TASK_ID)
else
  -- No V1 slot for it now (the budget or the tenant's cap is used up): wait in its line
  -- for one rather than in the broker queue, so other tenants' new tasks are not stuck
  -- behind this tenant's backlog there. A slot freeing wakes it by fair share.
  redis.call('ZREMRANGEBYSCORE', SLOTS, '-inf', t)
  if redis.call('ZCARD', SLOTS) >= SLOT_LIMIT or tenant_at_cap(TK, tenant, t, 0) then
    redis.call('HSET', TK, 'parked', 'capacity')
    enqueue_wait(TK, TASK_ID, wait_rank(TK))
  else
    redis.call('LPUSH', ARGV[8], ARGV[10])
  end
end
local queued = ARGV[6]
if #stop > 0 then
  -- Its own record says what it did: {"interrupted": [ids]} or {"replaced": [ids]}.
  local data = cjson.decode(queued)
  data[if_busy == 'interrupt' and 'interrupted' or 'replaced'] = stop
  queued = cjson.encode(data)
end
emit_for(TK, TASK_ID, 'queued', queued, route)
redis.call('EXPIRE', TK, live_ttl)
redis.call('EXPIRE', EVENTS, live_ttl)
if #stop > 0 then
  local out = {1}
  for _, id in ipairs(stop) do out[#out + 1] = id end
  return out
end
return 1
