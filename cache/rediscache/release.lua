-- release.lua: delete a key only while it still holds our lease.
-- KEYS[1]: the key. ARGV[1]: the lease marker.
-- Returns 1 when deleted, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
