-- FORGET_SQL_PENDING (standalone): tasks' SQL copies caught up. KEYS[1] the pending set
-- (SQL_PENDING); ARGV pairs: a task id, its score when it was read (or marked). Removes
-- an entry only if no write failed again since (its score moved). Returns how many went.
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
