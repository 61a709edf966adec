-- REDISPATCH_LOST (standalone): a queued task whose broker message was lost (a worker died
-- between kombu's pop and its `unacked` record). KEYS[1] the task hash, KEYS[2] the due set
-- (DISPATCH_DUE); ARGV[1] task id, ARGV[2] the dispatch number seen missing, ARGV[3] now.
-- Only if it is still queued with that dispatch, not parked, not held by a live worker and
-- not already due: a new dispatch number (a stray old message is stale), at the head of its
-- queue (it had its turn), due now. Returns 1 if re-dispatched, else 0.
local r = redis.call('HMGET', KEYS[1], 'state', 'dispatch', 'parked', 'held_until')
if r[1] ~= 'queued' or r[2] ~= ARGV[2] or (r[3] and r[3] ~= '') then return 0 end
if tonumber(r[4] or '0') > tonumber(ARGV[3]) then return 0 end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'dispatch', 1)
redis.call('HSET', KEYS[1], 'queue_head', '1')
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
