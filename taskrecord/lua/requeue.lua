-- REQUEUE (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there).
-- ARGV[5..]: token ('' = whoever), delay, error_json, queue.
-- A failed attempt goes back to `queued` with a new dispatch number, due after `delay`
-- (maintenance publishes it: no ETA message sits in a worker's memory), or published here
-- when there is no delay. It keeps its place in its session, and goes ahead of new work in
-- its queue (`queue_head`, see publish() in the prelude). Returns {dispatch, #woken,
-- woken..., hash...} or {-1}.
local r = redis.call('HMGET', TK, 'state', 'attempt_token', 'attempts')
if not r[1] or is_terminal(r[1]) then return {-1} end
if ARGV[5] ~= '' and r[2] ~= ARGV[5] then return {-1} end
local dispatch = redis.call('HINCRBY', TK, 'dispatch', 1)
-- The failed attempt's error stays readable while the task waits for its next attempt.
redis.call('HSET', TK, 'state', 'queued', 'lease_until', '0', 'attempt_token', '',
  'queue', ARGV[8], 'answered', '0', 'output_started', '0', 'parked', '', 'error', ARGV[7],
  'queue_head', '1')
redis.call('DEL', PARTIAL)
redis.call('ZREM', LEASES, TASK_ID)
local delay = tonumber(ARGV[6])
if delay > 0 then
  redis.call('ZADD', DUE, now() + delay, TASK_ID)
else
  publish(TK, TASK_ID)  -- re-run now (its worker was lost): no publisher round trip
end
emit('retrying', '{"attempt":' .. (r[3] or '0') .. ',"delay_seconds":' .. ARGV[6] ..
  ',"queue":"' .. ARGV[8] .. '","error":' .. ARGV[7] .. '}')
return answer({dispatch}, release(true))
