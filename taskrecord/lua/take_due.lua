-- TAKE_DUE (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there).
-- Maintenance: a task due for publishing. Returns {'publish', queue, dispatch} when it
-- is queued, {'skip'} otherwise (a paused task is parked: resume publishes it).
redis.call('ZREM', DUE, TASK_ID)
local r = redis.call('HMGET', TK, 'state', 'queue', 'dispatch')
if r[1] == 'queued' then return {'publish', r[2], r[3]} end
if r[1] == 'paused' then redis.call('HSET', TK, 'parked', 'paused') end
return {'skip'}
