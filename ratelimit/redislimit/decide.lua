-- decide.lua: a batch of rate-limit decisions, each all-or-nothing over every
-- policy of one subject. It implements exactly the integer arithmetic of
-- the reference semantics (ratelimit/internal/backend: GCRA in microseconds,
-- windows in milliseconds); Lua numbers are doubles, and every product stays
-- below 2^53 because ratelimit.Policy.Validate bounds them. The whole batch runs atomically at one
-- instant.
--
-- KEYS     the keys of every decision, in order; the keys of one decision
--          carry its subject's hash tag (on Redis Cluster a batch is one slot).
-- ARGV[1]  "" in production: the time is redis.call('TIME'). Tests pass Unix
--          microseconds here through an unexported hook; then TTLs get 60 s of
--          slack, because the fake clock and Redis' expiry clock differ.
-- ARGV[2]  the number of decisions D.
-- ARGV[3]  the number of policy specs S, then S specs of five arguments:
--          alg ("g", "s" or "f"), a, b, cost, shadow ("1"/"0")
--          GCRA: a = emission interval T (µs), b = tau = burst*T (µs).
--          windows: a = window length W (ms), b = limit N.
--          A batch sends each distinct spec once: its decisions refer to it.
-- then for each decision a header: with one policy, its spec index i
--          (1-based) to decide (consume when every enforced policy admits),
--          or -i to peek; with n policies, "d<n>" or "p<n>" followed by n
--          spec indexes; a decision that takes leases, "l<n>" followed by a
--          divisor m and n quadruples (spec index, units wanted, units given
--          back, ref): first the units given back return to the state (see
--          giveback: what is left of the caller's previous lease), then it is
--          decided as "d", and when admitted, each policy with units wanted
--          is also charged g = min(wanted, floor(remaining / m)) more units,
--          exactly as an admitted request of cost+g would be (the caller
--          spends them locally: a lease); a give-back alone is "r" followed
--          by the spec index, the units and the ref, and returns 1 value: 1
--          if the state changed, else 0.
-- Returns  one flat array: for each decision, four values per policy: allowed
--          (0/1), remaining, retry (µs), reset (µs), and for "l" decisions
--          three more: the units granted ahead, where they stand (GCRA: the
--          TAT after the decision, Unix µs; windows: the index of the window
--          they count in), and the time used (Unix µs); a decision that
--          denies adds the
--          time used (Unix µs) and the stored value of each of its keys (""
--          if none), from which the caller's deny cache re-evaluates the
--          decision locally until its retry time.
-- Stored values: GCRA "<TAT>" (Unix µs), sliding
-- "s:<window>:<count>:<previous count>", fixed "f:<window>:<count>".
-- Every key written gets its TTL in the same SET; a key found without a TTL
-- gets one (PEXPIRE), so no key of the limiter can outlive its relevance.

if redis.replicate_commands then redis.replicate_commands() end -- Redis < 7: replicate effects (TIME)

local now
local slack = 0
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
  slack = 60000
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local floor = math.floor
-- fmt formats an integer below 2^53 exactly ('%d' is a C long here), at
-- half the cost of '%.0f' and without depending on how Redis formats numbers.
local function fmt(x) return string.format('%d', x) end

-- ttl returns the PX of a value that expires at exp (Unix µs).
local function ttl(exp)
  local ms = math.ceil((exp - now) / 1000)
  if ms < 1 then ms = 1 end
  return ms + slack
end

-- gcraReset returns the time until one more unit of quota is available when
-- the TAT is diff after now: at most one emission interval t.
local function gcraReset(diff, t)
  if diff <= 0 then return 0 end
  local r = diff % t
  if r ~= 0 then return r end
  return t
end

-- gcra1 decides the common case, one GCRA policy (spec sp) for key, on a
-- straight path without tables, writing its values into out after index o.
-- It returns the new end of out, or nil, having written nothing, when the
-- stored value is not a TAT of at most 18 digits: the general path parses it.
-- A TAT not after now is the same as none, whatever its form.
local function gcra1(key, mode, sp, out, o)
  local t, tau, cost = sp[2], sp[3], sp[4]
  local raw = redis.call('GET', key)
  local tat = now
  if raw then
    local v = tonumber(raw)
    if not v then return nil end
    if v > now then
      if #raw > 18 or not string.find(raw, '^%d+$') then return nil end
      tat = v
    end
  end
  local newtat = tat + cost * t
  local ok = newtat - tau <= now
  if ok then
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = 1, floor((tau - (newtat - now)) / t), 0, gcraReset(newtat - now, t)
    if mode == 'd' then
      redis.call('SET', key, fmt(newtat), 'PX', ttl(newtat))
      return o + 4
    end
  else
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = 0, 0, newtat - tau - now, gcraReset(tat - now, t)
  end
  if raw and redis.call('PTTL', key) == -1 then
    redis.call('PEXPIRE', key, ttl(tat))
  end
  if ok or sp[5] then return o + 4 end
  out[o + 5], out[o + 6] = now, raw or ''
  return o + 6
end

-- giveback returns units of a lease to the state stored at key under spec sp
-- and returns the value stored afterwards (false if none) and 1 if it
-- changed, else 0. The units were charged as admitted requests; giving them
-- back makes the state what it would be had they never been charged, as far
-- as is safe. GCRA: ref is the TAT the grant left; only while it is still the
-- stored TAT (nothing was charged after the lease, so moving the TAT back
-- moves no one else's units) do the units whose place still lies ahead of
-- now move it back; otherwise, and for units whose place has passed, time
-- gives them back. Windows: ref is the window the lease was taken in; its
-- count goes down while it still counts (the current window; for sliding,
-- also as the previous one).
local function giveback(key, sp, units, ref)
  local raw = redis.call('GET', key)
  if not raw or units <= 0 then return raw, 0 end
  local alg, a = sp[1], sp[2]
  if alg == 'g' then
    if #raw > 18 or not string.find(raw, '^%d+$') then return raw, 0 end
    local tat = tonumber(raw)
    if tat ~= ref or tat <= now then return raw, 0 end
    local ahead = floor((tat - now) / a)
    if ahead < units then units = ahead end
    if units <= 0 then return raw, 0 end
    local newtat = tat - units * a
    if newtat <= now then
      redis.call('DEL', key) -- a TAT not after now is a fresh state
      return false, 1
    end
    local v = fmt(newtat)
    redis.call('SET', key, v, 'PX', ttl(newtat))
    return v, 1
  end
  local f = {}
  if string.sub(raw, 1, 2) == alg .. ':' then
    for x in string.gmatch(string.sub(raw, 3), '[^:]+') do f[#f + 1] = tonumber(x) end
  end
  if not f[1] or not f[2] then return raw, 0 end
  local function sub(x)
    x = x - units
    if x < 0 then x = 0 end
    return x
  end
  if f[1] == ref then
    f[2] = sub(f[2])
  elseif alg == 's' and f[1] == ref + 1 and f[3] then
    f[3] = sub(f[3])
  else
    return raw, 0
  end
  local v = alg .. ':' .. fmt(f[1]) .. ':' .. fmt(f[2])
  if alg == 's' then v = v .. ':' .. fmt(f[3] or 0) end
  redis.call('SET', key, v, 'KEEPTTL')
  return v, 1
end

-- parse returns the stored state of algorithm alg (zero state if none or of another algorithm).
-- A value that does not parse (a foreign writer) is the zero state, as in Go.
local function parse(raw, alg)
  local st = {t = 0, c = 0, p = 0}
  if not raw then return st end
  if alg == 'g' then
    local v = string.match(raw, '^%d+$')
    if v and #v <= 18 then st.t = tonumber(v) end
    return st
  end
  if string.sub(raw, 1, 1) == alg and string.sub(raw, 2, 2) == ':' then
    local i = 0
    for f in string.gmatch(string.sub(raw, 3), '[^:]+') do
      i = i + 1
      local v = tonumber(f)
      if v == nil or i > 3 then return {t = 0, c = 0, p = 0} end
      if i == 1 then st.t = v elseif i == 2 then st.c = v else st.p = v end
    end
  end
  return st
end

-- eval returns allowed, remaining, retry_us, reset_us, next value (nil if unchanged), expiry (Unix µs).
local function eval(alg, a, b, st, cost)
  if alg == 'g' then
    local t, tau = a, b
    local tat = st.t
    if tat < now then tat = now end
    local newtat = tat + cost * t
    if newtat - tau > now then
      return 0, 0, newtat - tau - now, gcraReset(tat - now, t), nil, tat
    end
    return 1, floor((tau - (newtat - now)) / t), 0, gcraReset(newtat - now, t), fmt(newtat), newtat
  end
  local w, n = a, b
  local nowms = floor(now / 1000)
  local idx = floor(nowms / w)
  local elapsed = nowms - idx * w
  local curr, prev = 0, 0
  if st.t == idx then curr, prev = st.c, st.p elseif st.t == idx - 1 then prev = st.c end
  if alg == 'f' then prev = 0 end
  local resetus = (w - elapsed) * 1000
  local weighted = floor((prev * (w - elapsed) + w - 1) / w)
  local k = n - curr - cost
  local life = w
  if alg == 's' then life = 2 * w end
  if weighted <= k then
    local v
    if alg == 's' then
      v = 's:' .. fmt(idx) .. ':' .. fmt(curr + cost) .. ':' .. fmt(prev)
    else
      v = 'f:' .. fmt(idx) .. ':' .. fmt(curr + cost)
    end
    return 1, k - weighted, 0, resetus, v, (idx * w + life) * 1000
  end
  local stexp = (st.t * w + life) * 1000
  if alg == 's' and k >= 0 then
    local e = w - floor(k * w / prev)
    if e < w then
      return 0, 0, (e - elapsed) * 1000, resetus, nil, stexp
    end
  end
  local retry = w - elapsed
  if alg == 's' and curr > 0 then
    retry = retry + w - floor((n - cost) * w / curr)
  end
  return 0, 0, retry * 1000, resetus, nil, stexp
end

-- general decides the policies of specs sps over keys KEYS[k+1..k+#sps]. It
-- writes its values into out after index o and returns the new end. For mode
-- 'l', ls[i] = {wanted, given back, ref} for policy i and m is the divisor of
-- the remaining quota that bounds the units granted.
local function general(k, mode, sps, out, o, ls, m)
  local n = #sps
  local items = {}
  local decided = true
  for i = 1, n do
    local sp = sps[i]
    local it = {key = KEYS[k + i], alg = sp[1], a = sp[2], b = sp[3], cost = sp[4], shadow = sp[5]}
    if mode == 'l' then
      it.raw = giveback(it.key, sp, ls[i][2], ls[i][3])
    else
      it.raw = redis.call('GET', it.key)
    end
    it.st = parse(it.raw, it.alg)
    it.ok, it.rem, it.retry, it.reset, it.next, it.exp = eval(it.alg, it.a, it.b, it.st, it.cost)
    if it.ok == 0 and not it.shadow then decided = false end
    items[i] = it
  end
  for i = 1, n do
    local it = items[i]
    local granted = 0
    if not decided and it.ok == 1 then
      -- nothing is consumed: report the quota as it is
      it.ok, it.rem, it.retry, it.reset = eval(it.alg, it.a, it.b, it.st, 0)
      it.next = nil
    elseif decided and mode == 'l' and it.ok == 1 and not it.shadow then
      granted = floor(it.rem / m)
      if ls[i][1] < granted then granted = ls[i][1] end
      if granted > 0 then
        it.ok, it.rem, it.retry, it.reset, it.next, it.exp = eval(it.alg, it.a, it.b, it.st, it.cost + granted)
      end
    end
    if decided and mode ~= 'p' and it.ok == 1 and it.next then
      redis.call('SET', it.key, it.next, 'PX', ttl(it.exp))
    elseif it.raw and redis.call('PTTL', it.key) == -1 then
      -- repair a key without a TTL (written by something else, or restored)
      redis.call('PEXPIRE', it.key, ttl(it.exp))
    end
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = it.ok, it.rem, it.retry, it.reset
    o = o + 4
    if mode == 'l' then
      local at = 0
      if it.alg == 'g' then
        if it.ok == 1 and decided then at = it.exp end
      else
        at = floor(floor(now / 1000) / it.a)
      end
      out[o + 1], out[o + 2], out[o + 3] = granted, at, now
      o = o + 3
    end
  end
  if not decided then
    o = o + 1
    out[o] = now
    for i = 1, n do
      out[o + i] = items[i].raw or ''
    end
    o = o + n
  end
  return o
end

local specs = {}
local a = 4
for s = 1, tonumber(ARGV[3]) do
  specs[s] = {ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), ARGV[a + 4] == '1'}
  a = a + 5
end
local out, o, k = {}, 0, 0
for _ = 1, tonumber(ARGV[2]) do
  local h = ARGV[a]
  a = a + 1
  local i = tonumber(h)
  if i then
    local mode = 'd'
    if i < 0 then mode, i = 'p', -i end
    local sp = specs[i]
    local r
    if sp[1] == 'g' then r = gcra1(KEYS[k + 1], mode, sp, out, o) end
    o = r or general(k, mode, {sp}, out, o)
    k = k + 1
  elseif h == 'r' then
    local _, changed = giveback(KEYS[k + 1], specs[tonumber(ARGV[a])], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]))
    a = a + 3
    o = o + 1
    out[o] = changed
    k = k + 1
  elseif string.sub(h, 1, 1) == 'l' then
    local sps, ls = {}, {}
    local m = tonumber(ARGV[a])
    a = a + 1
    for j = 1, tonumber(string.sub(h, 2)) do
      sps[j], ls[j] = specs[tonumber(ARGV[a])], {tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])}
      a = a + 4
    end
    o = general(k, 'l', sps, out, o, ls, m)
    k = k + #sps
  else
    local sps = {}
    for j = 1, tonumber(string.sub(h, 2)) do
      sps[j] = specs[tonumber(ARGV[a])]
      a = a + 1
    end
    o = general(k, string.sub(h, 1, 1), sps, out, o)
    k = k + #sps
  end
end
return out
