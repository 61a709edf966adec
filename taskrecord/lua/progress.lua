-- PROGRESS (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there).
-- ARGV[5..]: token, delta, data_json, ttl. The first output marks the attempt `answered`:
-- from then on a lost worker's task is not re-run (the agent may have acted), the same
-- line the retry policy draws. (V1's first, role-only chunk comes before the model runs.)
local r = redis.call('HMGET', TK, 'state', 'attempt_token')
if r[1] ~= 'running' or r[2] ~= ARGV[5] then return -1 end
redis.call('APPEND', PARTIAL, ARGV[6])
redis.call('EXPIRE', PARTIAL, tonumber(ARGV[8]))
redis.call('HSET', TK, 'output_started', '1', 'answered', '1')
return emit('progress', ARGV[7])
