-- PROGRESS (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there).
-- ARGV[5..]: token, delta, data_json, ttl, sent (bytes of this attempt's output already
-- appended, as the worker counts them). The first output marks the attempt `answered`:
-- from then on a lost worker's task is not re-run (the agent may have acted), the same
-- line the retry policy draws. (V1's first, role-only chunk comes before the model runs.)
-- A worker sends a delta again when Redis did not answer (a failover, a cut link): what
-- of it already landed (the partial is longer than `sent`) is not appended twice.
-- Returns -1 (not this attempt's), 0 (all of it had landed) or the event's seq.
local r = redis.call('HMGET', TK, 'state', 'attempt_token')
if r[1] ~= 'running' or r[2] ~= ARGV[5] then return -1 end
local delta, data = ARGV[6], ARGV[7]
local landed = redis.call('STRLEN', PARTIAL) - tonumber(ARGV[9])
if landed > 0 and landed <= #delta then
  delta = string.sub(delta, landed + 1)
  if delta == '' then return 0 end
  data = '{"delta":' .. cjson.encode(delta) .. '}'
end
redis.call('APPEND', PARTIAL, delta)
redis.call('EXPIRE', PARTIAL, tonumber(ARGV[8]))
redis.call('HSET', TK, 'output_started', '1', 'answered', '1')
return emit('progress', data)
