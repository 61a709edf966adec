-- RESUME (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there).
-- Returns {'resumed', dispatch_due(0/1)} or {state}.
local st = redis.call('HGET', TK, 'state')
if not st then return {'missing'} end
if st ~= 'paused' then return {st} end
redis.call('HSET', TK, 'state', 'queued')
emit('resumed', '{}')
local woken = {}
wake(TASK_ID, woken)
return {'resumed', #woken}
