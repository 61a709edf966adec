-- CLAIM_DUE (standalone): take one member of a due set (a sorted set member -> when it is
-- due) for this caller, so two maintenance instances never act on it both (schedules,
-- webhook attempts). KEYS[1] the due set; ARGV[1] the member, ARGV[2] now, ARGV[3] until
-- when the claim holds (its score moves there: if the claimer dies, it is due again then).
-- Returns 1 if this caller claimed it, 0 if it is not due or another caller claimed it.
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if due and tonumber(due) <= tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
