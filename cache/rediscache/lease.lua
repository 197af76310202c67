-- lease.lua: take the fill lease of a key stored in the key itself.
-- KEYS[1]: the key. ARGV[1]: the lease marker ("lease:<id>"). ARGV[2]: lease TTL in ms.
-- Returns 1 when the lease was taken, otherwise what the key holds.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return redis.call('GET', KEYS[1])
