-- heartbeat.lua: refresh this instance's member in the live-instance set and
-- count the members seen within the window. The set's own TTL is refreshed too,
-- so it disappears when every instance stops.
--
-- KEYS[1]  the sorted set (score: Redis time in ms).
-- ARGV[1]  this instance's ID.
-- ARGV[2]  the liveness window in ms (a member older than this is dead).
-- Returns  the number of live members, this one included.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('PEXPIRE', KEYS[1], window * 2)
return redis.call('ZCARD', KEYS[1])
