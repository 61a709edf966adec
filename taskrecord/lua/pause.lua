-- PAUSE (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there).
-- Returns 'paused', or the state that prevents it.
local st = redis.call('HGET', TK, 'state')
if not st then return 'missing' end
if st ~= 'queued' then return st end
redis.call('HSET', TK, 'state', 'paused')
-- Waiting for a V1 slot: leave that line; resume dispatches it again.
if leave_wait(TK, TASK_ID) == 1 then redis.call('HSET', TK, 'parked', 'paused') end
emit('paused', '{}')
return 'paused'
