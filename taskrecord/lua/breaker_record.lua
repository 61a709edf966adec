-- BREAKER_RECORD (standalone): record one V1 outcome.
-- KEYS[1] the breaker hash, KEYS[2] the probe key; ARGV: ok (1/0), threshold, cooldown.
-- Returns the state after recording.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local st = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[1] == '1' then
  if st ~= 'closed' or redis.call('HGET', KEYS[1], 'failures') ~= '0' then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', '0', 'closed_at', now)
    redis.call('DEL', KEYS[2])
  end
  return 'closed'
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if st == 'half_open' or (st == 'closed' and failures >= tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + tonumber(ARGV[3]),
    'opened_at', now)
  redis.call('HINCRBY', KEYS[1], 'times_opened', 1)
  redis.call('DEL', KEYS[2])
  return 'open'
end
return st
