-- RETRY (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there).
-- ARGV[5..]: live_ttl, deadline, reason. Manual retry of a failed / cancelled / timed-out
-- task: the same task id starts a new attempt. Returns 'queued' or the state found.
local st = redis.call('HGET', TK, 'state')
if not st then return 'missing' end
if st ~= 'failed' and st ~= 'cancelled' and st ~= 'timed_out' then return st end
redis.call('HDEL', TK, 'result', 'error', 'finished_at', 'cancel_requested', 'cancel_reason')
-- A manual retry is new work: it queues behind what is waiting (no `queue_head`).
redis.call('HSET', TK, 'state', 'queued', 'parked', '', 'queue_head', '', 'answered', '0',
  'output_started', '0', 'attempt_token', '', 'lease_until', '0', 'created_at', fmt(now()),
  'retry_base', redis.call('HGET', TK, 'attempts') or '0')
redis.call('HINCRBY', TK, 'dispatch', 1)
redis.call('DEL', PARTIAL)
redis.call('ZADD', DEADLINES, tonumber(ARGV[6]), TASK_ID)
publish(TK, TASK_ID)
local sk = session_key(TK)
if sk then
  redis.call('ZADD', sk, redis.call('HGET', TK, 'created_at'), TASK_ID)
  redis.call('EXPIRE', sk, tonumber(ARGV[5]))
end
emit('retrying', '{"manual":true,"reason":' .. cjson.encode(ARGV[7]) .. '}')
redis.call('EXPIRE', TK, tonumber(ARGV[5]))
redis.call('EXPIRE', EVENTS, tonumber(ARGV[5]))
return 'queued'
