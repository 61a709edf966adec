-- BREAKER_CHECK (standalone): may a task call V1 now?
-- KEYS[1] the breaker hash, KEYS[2] the half-open probe key; ARGV[1] the probe key's TTL.
-- Returns {'closed', failures} | {'probe'} (this caller is the one probe) | {'open', until}.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local st = redis.call('HGET', KEYS[1], 'state') or 'closed'
if st == 'closed' then return {'closed', redis.call('HGET', KEYS[1], 'failures') or '0'} end
local until_ = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if now < until_ then return {'open', tostring(until_)} end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('HSET', KEYS[1], 'state', 'half_open')
  return {'probe'}
end
return {'open', tostring(now + 1)}
