-- TAKE_DUE (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there).
-- A task in the due set whose time has come (a retry's delay ran out, a scheduled run, a
-- re-dispatch after its message was lost): push its message for its current queue and
-- dispatch (publish() in the prelude), then it is no longer due. Returns {'published'},
-- or {'skip'} when it is not due (already published) or not queued (a paused task is
-- parked: resume publishes it).
if not redis.call('ZSCORE', DUE, TASK_ID) then return {'skip'} end
local st = redis.call('HGET', TK, 'state')
if st == 'queued' then
  publish(TK, TASK_ID)
  return {'published'}
end
redis.call('ZREM', DUE, TASK_ID)
if st == 'paused' then redis.call('HSET', TK, 'parked', 'paused') end
return {'skip'}
