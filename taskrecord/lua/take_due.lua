-- TAKE_DUE (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there).
-- ARGV[5..]: queue, dispatch, celery_message (rendered by taskrecord.message for that
-- queue and dispatch). A task due for publishing: push its message, then it is no longer
-- due. A task that already ran or was woken (field `queue_head`: its attempt was cut, a
-- retry's delay ran out, or it waited for a V1 slot or its conversation) goes to the
-- head of its queue, ahead of new work: kombu LPUSHes and BRPOPs, so RPUSH is next out.
-- Returns {'published'}; {'changed', queue, dispatch} when the message was rendered for
-- another queue or dispatch (nothing done: render it again); {'skip'} when the task is
-- not queued (a paused task is parked: resume publishes it).
local r = redis.call('HMGET', TK, 'state', 'queue', 'dispatch', 'queue_head')
if r[1] == 'queued' then
  if r[2] ~= ARGV[5] or r[3] ~= ARGV[6] then return {'changed', r[2] or '', r[3] or ''} end
  redis.call('ZREM', DUE, TASK_ID)
  if r[4] == '1' then
    redis.call('HSET', TK, 'queue_head', '')
    -- First come, first served among the messages at the head: the last one put there is
    -- remembered and this one goes just behind it. LPOS searches from the right, through
    -- at most 1,000 messages; when the remembered one is not among them (already taken),
    -- this one is next out.
    local last_key = P .. 'queue-head-last:' .. ARGV[5]
    local last = redis.call('GET', last_key)
    local at = last and redis.call('LPOS', ARGV[5], last, 'RANK', -1, 'MAXLEN', 1000)
    local ahead = {}
    if at then ahead = redis.call('RPOP', ARGV[5], redis.call('LLEN', ARGV[5]) - at) end
    redis.call('RPUSH', ARGV[5], ARGV[7])
    for i = #ahead, 1, -1 do redis.call('RPUSH', ARGV[5], ahead[i]) end
    redis.call('SET', last_key, ARGV[7], 'EX', 3600)
  else
    redis.call('LPUSH', ARGV[5], ARGV[7])
  end
  return {'published'}
end
redis.call('ZREM', DUE, TASK_ID)
if r[1] == 'paused' then redis.call('HSET', TK, 'parked', 'paused') end
return {'skip'}
