-- FORGET_SQL_PENDING (standalone): a task's SQL copy caught up. KEYS[1] the pending set
-- (SQL_PENDING); ARGV[1] task id, ARGV[2] its score when it was read. Removes the entry only
-- if no write failed again since (its score moved). Returns 1 if removed, else 0.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
