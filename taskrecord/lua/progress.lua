-- PROGRESS (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there).
-- ARGV[5..]: token, delta, data_json, ttl, sent (bytes of this attempt's output already
-- appended, as the worker counts them): see append_output in the prelude. (V1's first,
-- role-only chunk comes before the model runs: it is no output.)
-- Returns -1 (not this attempt's), 0 (all of it had landed) or the event's seq.
local r = redis.call('HMGET', TK, 'state', 'attempt_token')
if r[1] ~= 'running' or r[2] ~= ARGV[5] then return -1 end
return append_output(ARGV[6], ARGV[7], ARGV[9], tonumber(ARGV[8]))
