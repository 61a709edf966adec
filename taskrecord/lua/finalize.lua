-- FINALIZE (prepended by prelude.lua; KEYS[1] task hash, ARGV[1..4] as there).
-- ARGV[5..]: token ('' = whoever), state, result_json, error_json, reason, result_ttl,
-- only_from ('' = any live state), EWMA weight of the duration estimates ('' = learn nothing),
-- sql_due ('' = none): the ender copies the end to SQL later, without waiting; the task
-- waits in SQL_PENDING (due then) until that copy lands, so a crash in between loses
-- nothing (maintenance copies it once due; taskrecord.sql_pending); then the running
-- attempt's last output ('' = none), its progress data_json and the bytes sent before it:
-- appended and announced as a progress event first (append_output), in the same call.
-- Returns {code, detail, #woken, woken..., hash...} (see answer() in the prelude) when it
-- ended the task, else {code, detail}: code 1 ended it (detail = partial output), 0 it had
-- already ended or does not exist (detail = state), -1 another attempt owns it, -2 it is
-- not in only_from.
-- A success teaches its agent's expected duration (claim to finish; taskrecord.estimator
-- reads it): an exponentially weighted mean, fields <agent>:n (capped) and <agent>:mean.
local function learn_duration()
  local r = redis.call('HMGET', TK, 'agent_id', 'attempt_started_at')
  local started, weight = tonumber(r[2] or ''), tonumber(ARGV[12])
  if not r[1] or not started or not weight then return end
  local est, took = P .. 'estimates', math.max(now() - started, 0)
  local n = tonumber(redis.call('HGET', est, r[1] .. ':n') or '0')
  local mean = tonumber(redis.call('HGET', est, r[1] .. ':mean') or took)
  mean = mean + math.max(weight, 1 / (n + 1)) * (took - mean)
  redis.call('HSET', est, r[1] .. ':n', math.min(n + 1, 1000000), r[1] .. ':mean',
    string.format('%.3f', mean))
end

local st = redis.call('HGET', TK, 'state')
if not st then return {0, ''} end
if is_terminal(st) then return {0, st} end
if ARGV[11] ~= '' and st ~= ARGV[11] then return {-2, st} end
if ARGV[5] ~= '' and redis.call('HGET', TK, 'attempt_token') ~= ARGV[5] then return {-1, ''} end
if ARGV[14] ~= '' and st == 'running' then
  append_output(ARGV[14], ARGV[15], ARGV[16], tonumber(ARGV[10]))
end
local partial = redis.call('GET', PARTIAL) or ''
local state = ARGV[6]
local data, extra
local reason, err = ARGV[9], ARGV[8]
-- A cancel asked with a reason (cancel.lua; a new task that interrupts or replaces it,
-- create.lua) ends with that reason, whoever carries it out (worker, maintenance).
local asked = redis.call('HGET', TK, 'cancel_reason') or ''
if state == 'cancelled' and asked ~= '' then
  reason, err = asked, cjson.encode({type = 'cancelled', message = asked})
end
if state == 'succeeded' then
  learn_duration()
  data = '{"result":' .. ARGV[7] .. '}'
  extra = {'result', ARGV[7]}
  redis.call('HDEL', TK, 'error')  -- a failed earlier attempt's error is history now
elseif state == 'failed' then
  data = '{"error":' .. ARGV[8] .. ',"partial":' .. cjson.encode(partial) .. '}'
  extra = {'error', ARGV[8]}
else
  data = '{"partial":' .. cjson.encode(partial) .. ',"reason":' .. cjson.encode(reason) .. '}'
  extra = {'error', err}
end
emit(state, data)
owe_sql_copy(ARGV[13])
return answer({1, partial}, ended(state, tonumber(ARGV[10]), extra))
