-- RENEW_MANY (prepended by prelude.lua; ARGV[1..4] as there, ARGV[1] a placeholder).
-- The leases of a worker's running tasks, many in one call:
-- KEYS the tasks' hashes; ARGV[5] lease_seconds, ARGV[6..] one attempt token per key.
-- Returns one of 'lost', 'cancel' or 'ok' per key, in order.
local lease = tonumber(ARGV[5])
local lease_until = now() + lease
local until_text = fmt(lease_until)
local ttl = math.ceil(lease) + 60
local out = {}
for i, tk in ipairs(KEYS) do
  local id = string.sub(tk, #P + 6)  -- P .. 'task:' .. id (keys.task_key)
  local r = redis.call('HMGET', tk, 'state', 'attempt_token', 'cancel_requested', 'tenant')
  if r[1] ~= 'running' or r[2] ~= ARGV[5 + i] then
    out[i] = 'lost'
  else
    redis.call('HSET', tk, 'lease_until', until_text)
    redis.call('ZADD', LEASES, lease_until, id)
    redis.call('ZADD', SLOTS, 'XX', lease_until, id)
    local ts = SLOTS .. ':' .. (r[4] or '')
    redis.call('ZADD', ts, 'XX', lease_until, id)
    redis.call('EXPIRE', ts, ttl)
    out[i] = r[3] == '1' and 'cancel' or 'ok'
  end
end
return out
