-- RECOVER (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there).
-- ARGV[5..]: fence_token. A running task whose lease ran out (its worker died or froze):
-- fence the old attempt off (its renewals and writes now fail) and say what to do.
-- Returns {action, attempts, queue}: action is 'gone' (not running / lease renewed),
-- 'cancel', 'lost_after_output' or 'requeue'.
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
