-- RESTORE_ORPHAN (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there).
-- ARGV[5..]: delivery_tag, dispatch, queue, message_json. A message kombu handed to a
-- worker (it sits in kombu's `unacked` hash until its claim) whose task was never
-- claimed: that worker died between fetching and claiming. Put it back at the head
-- of its queue; drop it if it is stale (task ended or re-dispatched). A message whose task
-- is running ('kept') or held by a live worker ('held': look again once the hold may have
-- lapsed) is left alone.
-- Returns 'restored', 'dropped', 'kept' or 'held'.
if redis.call('HEXISTS', UNACKED, ARGV[5]) == 0 then
  redis.call('ZREM', UNACKED_INDEX, ARGV[5])
  return 'dropped'
end
local r = redis.call('HMGET', TK, 'state', 'dispatch', 'parked', 'held_until')
local stale = (not r[1]) or is_terminal(r[1]) or r[2] ~= ARGV[6] or (r[3] and r[3] ~= '')
if not stale and r[1] == 'running' then return 'kept' end
if not stale and tonumber(r[4] or '0') > now() then return 'held' end
redis.call('HDEL', UNACKED, ARGV[5])
redis.call('ZREM', UNACKED_INDEX, ARGV[5])
if stale then return 'dropped' end
redis.call('RPUSH', ARGV[7], ARGV[8])
return 'restored'
