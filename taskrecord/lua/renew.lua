-- RENEW (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there).
-- ARGV[5..]: token, lease_seconds. Returns 'lost', 'cancel' or 'ok'.
local r = redis.call('HMGET', TK, 'state', 'attempt_token', 'cancel_requested')
if r[1] ~= 'running' or r[2] ~= ARGV[5] then return 'lost' end
local lease_until = now() + tonumber(ARGV[6])
redis.call('HSET', TK, 'lease_until', fmt(lease_until))
redis.call('ZADD', LEASES, lease_until, TASK_ID)
redis.call('ZADD', SLOTS, 'XX', lease_until, TASK_ID)
local ts = SLOTS .. ':' .. (redis.call('HGET', TK, 'tenant') or '')
redis.call('ZADD', ts, 'XX', lease_until, TASK_ID)
redis.call('EXPIRE', ts, math.ceil(tonumber(ARGV[6])) + 60)
if r[3] == '1' then return 'cancel' end
return 'ok'
