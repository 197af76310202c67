-- fill.lua: store a value only while the key still holds the version named by a
-- token (a lease marker, or the header of a value read earlier). A DEL or SET by
-- a writer changes the version, so a fill never overwrites an invalidation.
-- KEYS[1]: the key. ARGV[1]: the token (a prefix of the held value).
-- ARGV[2]: the new value. ARGV[3]: its TTL in ms.
-- Returns 1 when stored, 0 otherwise.
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
