-- ESTIMATOR_LEARN (standalone): fold one finished task's duration into its agent's mean.
-- KEYS[1] the estimates hash; ARGV: agent id, duration (s), EWMA weight.
-- Keeps fields <agent>:n (capped) and <agent>:mean. Returns 1.
local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. ':n') or '0')
local mean = tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. ':mean') or ARGV[2])
local w = math.max(tonumber(ARGV[3]), 1 / (n + 1))
mean = mean + w * (tonumber(ARGV[2]) - mean)
redis.call('HSET', KEYS[1], ARGV[1] .. ':n', math.min(n + 1, 1000000),
  ARGV[1] .. ':mean', string.format('%.3f', mean))
return 1
