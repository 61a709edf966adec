-- CREATE (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there).
-- ARGV[5..]: live_ttl, queued_data, deadline, queue, queue_limit, celery_message,
-- field, value, ... The record and its queue message are written together: a task is
-- never recorded without being queued, nor queued without a record.
-- Returns 1 (accepted), 0 (the id exists) or 'full:<depth>' (nothing written).
if redis.call('EXISTS', TK) == 1 then return 0 end
local depth = redis.call('LLEN', ARGV[8])
if depth >= tonumber(ARGV[9]) then return 'full:' .. depth end
local fields = {}
for i = 11, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', TK, unpack(fields))
redis.call('ZADD', DEADLINES, tonumber(ARGV[7]), TASK_ID)
redis.call('ZADD', P .. 'unpersisted', now(), TASK_ID)
redis.call('LPUSH', ARGV[8], ARGV[10])
local sk = session_key(TK)
if sk then
  redis.call('ZADD', sk, redis.call('HGET', TK, 'created_at'), TASK_ID)
  redis.call('EXPIRE', sk, tonumber(ARGV[5]))
end
emit('queued', ARGV[6])
redis.call('EXPIRE', TK, tonumber(ARGV[5]))
redis.call('EXPIRE', EVENTS, tonumber(ARGV[5]))
return 1
