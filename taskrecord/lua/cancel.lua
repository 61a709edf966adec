-- CANCEL (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there).
-- ARGV[5..]: reason, result_ttl, sql_due ('' = none; see owe_sql_copy in the prelude).
-- Queued/paused: cancelled now. Running: flagged, and the worker stops it (its finalize
-- owes the copy then). Returns {"cancelled", #woken, woken..., hash...} or {other outcome}.
local st = redis.call('HGET', TK, 'state')
if not st then return {'missing'} end
if is_terminal(st) then return {'terminal:' .. st} end
if st == 'running' then
  redis.call('HSET', TK, 'cancel_requested', '1', 'cancel_reason', ARGV[5])
  redis.call('PUBLISH', CONTROL, 'cancel ' .. TASK_ID)
  return {'requested'}
end
emit('cancelled', '{"partial":"","reason":' .. cjson.encode(ARGV[5]) .. '}')
owe_sql_copy(ARGV[7])
local extra = {'error', cjson.encode({type = 'cancelled', message = ARGV[5]})}
return answer({'cancelled'}, ended('cancelled', tonumber(ARGV[6]), extra))
