-- Shared prelude of every transition script (prepended by taskrecord.live_scripts).
-- Calling convention: KEYS[1] is the task's hash; ARGV[1] the task id, ARGV[2] the
-- event-log bound, ARGV[3] the V1 slot limit, ARGV[4] the V1 budget's name;
-- script-specific arguments follow from ARGV[5]. Other key names derive from the prefix
-- (single Redis/Valkey server; not Redis Cluster).
local P = '{{PREFIX}}:'
local TASK_ID, MAXLEN, SLOT_LIMIT, BUDGET = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local TK = KEYS[1]
local EVENTS = P .. 'events:' .. TASK_ID
local PARTIAL = P .. 'partial:' .. TASK_ID
local CONTROL = P .. 'control'
local LEASES, DEADLINES, DUE = P .. 'leases', P .. 'deadlines', P .. 'dispatch-due'
local SLOTS, WAIT = P .. 'v1slots:' .. BUDGET, P .. 'v1wait:' .. BUDGET
-- kombu's Redis transport: each fetched message's copy (by delivery tag) and fetch time,
-- until its ack (acks_late).
local UNACKED, UNACKED_INDEX = 'unacked', 'unacked_index'

local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.6f', x) end
local function is_terminal(st)
  return st == 'succeeded' or st == 'failed' or st == 'cancelled' or st == 'timed_out'
end
-- A conversation is (tenant, agent, session): tenants never share one, even with equal ids.
-- `r`: a task's {tenant, agent_id, session_id}; nil without a session.
local function conversation_name(r)
  if not r[3] or r[3] == '' then return nil end
  return (r[1] or '') .. ':' .. (r[2] or '') .. ':' .. r[3]
end
local function session_key(tk)
  local name = conversation_name(redis.call('HMGET', tk, 'tenant', 'agent_id', 'session_id'))
  return name and P .. 'session:' .. name
end
-- Append an event to a task's stream and announce it (route lets gateways fan out by
-- session without parsing): returns its seq. `r`: the task's {tenant, agent_id,
-- session_id} when the caller has them (else read from its hash).
local function emit_for(tk, id, etype, data, r)
  local seq = redis.call('HINCRBY', tk, 'seq', 1)
  local ev = '{"type":"' .. etype .. '","task_id":"' .. id .. '","seq":' .. seq ..
    ',"ts":' .. fmt(now()) .. ',"data":' .. data .. '}'
  redis.call('XADD', P .. 'events:' .. id, 'MAXLEN', '~', MAXLEN, '0-' .. seq, 'e', ev)
  r = r or redis.call('HMGET', tk, 'tenant', 'agent_id', 'session_id')
  local route = (r[1] or '') .. '\n' .. (r[2] or '') .. '\n' .. (r[3] or '')
  -- On the task's channel and its conversation's (keys.task_events_channel and
  -- session_events_channel): only gateways whose clients follow either receive it.
  redis.call('PUBLISH', P .. 'ev:t:' .. id, route .. '\n' .. ev)
  if r[3] and r[3] ~= '' then
    redis.call('PUBLISH', P .. 'ev:s:' .. route, route .. '\n' .. ev)
  end
  return seq
end
local function emit(etype, data) return emit_for(TK, TASK_ID, etype, data) end
-- An end whose SQL copy its ender makes without waiting (`due` '' = none): the task waits in
-- SQL_PENDING until the copy lands (the ender drops it) or, once due, maintenance makes it.
local function owe_sql_copy(due)
  if due ~= '' then redis.call('ZADD', P .. 'sql-pending', due, TASK_ID) end
end
-- Append a running attempt's output and announce it (`data`: its progress event's data).
-- `sent`: bytes of this attempt's output the worker knows had landed before `delta`: a delta
-- sent again after Redis did not answer (a failover, a cut link) is not appended twice.
-- The first output marks the attempt `answered`: from then on a lost worker's task is not
-- re-run (the agent may have acted). Returns 0 (all of it had landed) or the event's seq.
local function append_output(delta, data, sent, ttl)
  local landed = redis.call('STRLEN', PARTIAL) - tonumber(sent)
  if landed > 0 and landed <= #delta then
    delta = string.sub(delta, landed + 1)
    if delta == '' then return 0 end
    data = '{"delta":' .. cjson.encode(delta) .. '}'
  end
  redis.call('APPEND', PARTIAL, delta)
  redis.call('EXPIRE', PARTIAL, ttl)
  redis.call('HSET', TK, 'output_started', '1', 'answered', '1')
  return emit('progress', data)
end
local function expire_task(ttl)
  for _, k in ipairs({TK, EVENTS, PARTIAL}) do redis.call('EXPIRE', k, ttl) end
end
-- The Celery message of `openclaw.run` for one dispatch of a task, as kombu's Redis
-- transport stores `send_task(...)` (task protocol 2): rendered here, by the script that
-- publishes a woken, re-run or retried task, so no publisher round trip sits between a slot
-- freeing and the next task's message (a new task's comes rendered from the gateway,
-- taskrecord/message.py). tests/test_message.py compares both with Celery's own.
local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local d = {math.floor(n / 262144), math.floor(n / 4096) % 64, math.floor(n / 64) % 64, n % 64}
    out[#out + 1] = B64:sub(d[1] + 1, d[1] + 1) .. B64:sub(d[2] + 1, d[2] + 1) ..
      (b and B64:sub(d[3] + 1, d[3] + 1) or '=') .. (c and B64:sub(d[4] + 1, d[4] + 1) or '=')
  end
  return table.concat(out)
end
local function run_message(id, dispatch, queue)
  local d = tostring(dispatch)
  -- taskrecord.dispatch.message_id: the first dispatch is the task id itself (so `celery
  -- control revoke <task id>` works), later ones get a suffix.
  local mid = dispatch <= 1 and id or (id .. '.' .. d)
  local null = cjson.null
  local body = '[[' .. cjson.encode(id) .. ', ' .. cjson.encode(d) .. '], {}, {"callbacks": ' ..
    'null, "errbacks": null, "chain": null, "chord": null}]'
  local headers = {
    lang = 'py', task = 'openclaw.run', id = mid, shadow = null, eta = null, expires = null,
    group = null, group_index = null, retries = 0, timelimit = {null, null}, root_id = mid,
    parent_id = null, argsrepr = "['" .. id .. "', '" .. d .. "']",
    kwargsrepr = '(redacted)', origin = 'openclaw-scripts', ignore_result = true,
    replaced_task_nesting = 0, stamped_headers = null, stamps = {},
  }
  -- The delivery tag names this one message in kombu's `unacked` hash: unique per push.
  local t = redis.call('TIME')
  return cjson.encode({
    body = b64(body), ['content-encoding'] = 'utf-8', ['content-type'] = 'application/json',
    headers = headers,
    properties = {
      correlation_id = mid, reply_to = 'openclaw', delivery_mode = 2, priority = 0,
      body_encoding = 'base64', delivery_tag = mid .. ':' .. t[1] .. '.' .. t[2],
      delivery_info = {exchange = '', routing_key = queue},
    },
  })
end
-- Push a queued task's message for its current queue and dispatch, and it is no longer
-- due. New work goes to the tail; a task that already ran or was woken (field
-- `queue_head`: its attempt was cut, a retry's delay ran out, it waited for a V1 slot or
-- its conversation) to the head, ahead of new work: kombu LPUSHes and BRPOPs, so RPUSH is
-- next out.
-- `head`: to the head whatever the field says (a task being woken).
local function publish(tk, id, head)
  local r = redis.call('HMGET', tk, 'queue', 'dispatch', 'queue_head')
  local queue = r[1]
  local msg = run_message(id, tonumber(r[2] or '1'), queue)
  redis.call('ZREM', DUE, id)
  if not head and r[3] ~= '1' then
    redis.call('LPUSH', queue, msg)
    return
  end
  if r[3] == '1' then redis.call('HSET', tk, 'queue_head', '') end
  -- First come, first served among the messages at the head: the last one put there is
  -- remembered and this one goes just behind it. LPOS searches from the right, through
  -- at most 1,000 messages; when the remembered one is not among them (already taken),
  -- this one is next out.
  local last_key = P .. 'queue-head-last:' .. queue
  local last = redis.call('GET', last_key)
  local at = last and redis.call('LPOS', queue, last, 'RANK', -1, 'MAXLEN', 1000)
  local ahead = {}
  if at then ahead = redis.call('RPOP', queue, redis.call('LLEN', queue) - at) end
  redis.call('RPUSH', queue, msg)
  for i = #ahead, 1, -1 do redis.call('RPUSH', queue, ahead[i]) end
  redis.call('SET', last_key, msg, 'EX', 3600)
end
-- A parked task gets a new dispatch number and its message at the head of its queue (it
-- has had its turn in the queue already), in the same script that freed what it waited for.
local function wake(id, woken)
  local tk = P .. 'task:' .. id
  local r = redis.call('HMGET', tk, 'state', 'parked')
  if r[1] == 'queued' and r[2] and r[2] ~= '' then
    redis.call('HSET', tk, 'parked', '')
    redis.call('HINCRBY', tk, 'dispatch', 1)
    publish(tk, id, true)
    woken[#woken + 1] = id
    return true
  end
  return false
end
-- Weighted fair share of V1 slots among tenants: each task waits in its line (its tenant's
-- own, field `line`; one shared line `*` when FAIR_SHARE is off), by priority then age;
-- TENANTQ orders the waiting lines by virtual time, which grows by 1/weight per task woken
-- from the line, and a line that starts waiting joins at the clock (the virtual time of
-- the last line served), so idleness earns no credit.
local TENANTQ, VCLOCK = P .. 'v1wait-tenants:' .. BUDGET, P .. 'v1vclock:' .. BUDGET
local function tenant_of(tk) return redis.call('HGET', tk, 'tenant') or '' end
local function line_of(tk) return redis.call('HGET', tk, 'line') or tenant_of(tk) end
local function wait_key(line) return WAIT .. ':' .. line end
local function tenant_slots(tenant) return SLOTS .. ':' .. tenant end
local function enqueue_wait(tk, id, rank)
  local line = line_of(tk)
  redis.call('ZADD', wait_key(line), rank, id)
  if not redis.call('ZSCORE', TENANTQ, line) then
    redis.call('ZADD', TENANTQ, tonumber(redis.call('GET', VCLOCK) or '0'), line)
  end
end
-- 1 if the task was waiting for a slot (it no longer is).
local function leave_wait(tk, id)
  local line = line_of(tk)
  local wk = wait_key(line)
  local removed = redis.call('ZREM', wk, id)
  if removed == 1 and redis.call('ZCARD', wk) == 0 then redis.call('ZREM', TENANTQ, line) end
  return removed
end
-- Runs the tenant has (plus `extra` about to start) against its cap (0: no cap).
local function tenant_at_cap(tk, tenant, t, extra)
  local cap = tonumber(redis.call('HGET', tk, 'max_running') or '0') or 0
  if cap <= 0 then return false end
  local ts = tenant_slots(tenant)
  redis.call('ZREMRANGEBYSCORE', ts, '-inf', t)
  return redis.call('ZCARD', ts) + extra >= cap
end
local function wait_rank(tk)
  local r = redis.call('HMGET', tk, 'priority', 'created_at')
  return (10 - tonumber(r[1] or '5')) * 1e10 + tonumber(r[2] or '0')
end
-- Wake, by fair share, as many waiting tasks as V1 has free slots. Each woken task holds
-- its slot for RESERVE seconds until its claim takes it over (claim.lua lets a task already
-- in SLOTS through): no new task takes the slot meanwhile, and a later release does not
-- wake a second task for the same slot. A reservation never claimed (its queue paused, its
-- worker gone) lapses; maintenance then wakes the next in line (wake_waiting.lua).
local RESERVE = 3
local function reserve(id, tenant, until_t)
  redis.call('ZADD', SLOTS, until_t, id)
  local ts = tenant_slots(tenant)
  redis.call('ZADD', ts, until_t, id)
  if redis.call('TTL', ts) < RESERVE + 60 then redis.call('EXPIRE', ts, RESERVE + 60) end
end
local function wake_waiting(woken)
  local t = now()
  redis.call('ZREMRANGEBYSCORE', SLOTS, '-inf', t)
  local free = SLOT_LIMIT - redis.call('ZCARD', SLOTS)
  local capped = {}
  while free > 0 do
    local head = redis.call('ZRANGE', TENANTQ, 0, 0, 'WITHSCORES')
    if #head == 0 then break end
    local line, vt = head[1], tonumber(head[2])
    local wk = wait_key(line)
    local id = redis.call('ZRANGE', wk, 0, 0)[1]
    local tk = id and (P .. 'task:' .. id)
    local tenant = id and tenant_of(tk)
    if not id then
      redis.call('ZREM', TENANTQ, line)
    elseif tenant_at_cap(tk, tenant, t, 0) then
      -- Its tenant is at its own cap: set the line aside for this round, keep its place.
      redis.call('ZREM', TENANTQ, line)
      capped[#capped + 1] = {vt, line}
    else
      redis.call('ZREM', wk, id)
      redis.call('SET', VCLOCK, vt)
      if redis.call('ZCARD', wk) == 0 then
        redis.call('ZREM', TENANTQ, line)
      else
        local weight = tonumber(redis.call('HGET', tk, 'weight') or '1') or 1
        redis.call('ZADD', TENANTQ, vt + 1 / weight, line)
      end
      if wake(id, woken) then
        free = free - 1
        reserve(id, tenant, t + RESERVE)
      end
    end
  end
  for _, entry in ipairs(capped) do redis.call('ZADD', TENANTQ, entry[1], entry[2]) end
  return woken
end
-- Give back the V1 slot (and, unless keep_session, the task's place in its session),
-- then wake whoever can run now. Returns the ids woken.
local function release(keep_session)
  local woken = {}
  redis.call('ZREM', SLOTS, TASK_ID)
  redis.call('ZREM', tenant_slots(tenant_of(TK)), TASK_ID)
  leave_wait(TK, TASK_ID)
  local sk = session_key(TK)
  if sk and not keep_session then
    local before = redis.call('ZRANGE', sk, 0, 0)[1]
    redis.call('ZREM', sk, TASK_ID)
    local head = redis.call('ZRANGE', sk, 0, 0)[1]
    if head and head ~= before then wake(head, woken) end
  end
  return wake_waiting(woken)
end
-- {head..., #woken, woken..., the task's hash as field, value...}: callers mirror the
-- record to SQL from this answer instead of reading it again.
local function answer(head, woken)
  local out = head
  out[#out + 1] = #woken
  for _, id in ipairs(woken) do out[#out + 1] = id end
  for _, v in ipairs(redis.call('HGETALL', TK)) do out[#out + 1] = v end
  return out
end
local function ended(st, ttl, extra)
  local fields = {'state', st, 'finished_at', fmt(now()), 'lease_until', '0', 'parked', ''}
  for _, v in ipairs(extra) do fields[#fields + 1] = v end
  redis.call('HSET', TK, unpack(fields))
  redis.call('ZREM', P .. 'tenant-live:' .. tenant_of(TK), TASK_ID)
  redis.call('ZREM', LEASES, TASK_ID)
  redis.call('ZREM', DEADLINES, TASK_ID)
  redis.call('ZREM', DUE, TASK_ID)
  -- Its completion webhook is owed from here, whoever ended it (maintenance makes the
  -- delivery): in this script, so no end can be recorded without it.
  if (redis.call('HGET', TK, 'webhook_url') or '') ~= '' then
    redis.call('ZADD', P .. 'webhooks-due', 'NX', now(), 't:' .. TASK_ID)
  end
  local woken = release(false)
  expire_task(ttl)
  return woken
end
