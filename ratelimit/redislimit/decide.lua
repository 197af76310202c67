-- decide.lua: one all-or-nothing rate-limit decision over every policy of one
-- subject. It implements exactly the integer arithmetic of ratelimit.Policy.Eval
-- (GCRA in microseconds, windows in milliseconds); Lua numbers are doubles, and
-- every product stays below 2^53 because ratelimit.Policy.Validate bounds them.
--
-- KEYS[i]  the key of policy i; all keys carry the subject's hash tag.
-- ARGV[1]  "d" to decide (consume when all enforced policies admit), "p" to peek.
-- ARGV[2]  "" in production: the time is redis.call('TIME'). Tests pass Unix
--          microseconds here through an unexported hook; then TTLs get 60 s of
--          slack, because the fake clock and Redis' expiry clock differ.
-- ARGV[3+5*(i-1) .. 7+5*(i-1)]  policy i: alg ("g", "s" or "f"), a, b, cost, shadow ("1"/"0")
--          GCRA: a = emission interval T (µs), b = tau = burst*T (µs).
--          windows: a = window length W (ms), b = limit N.
-- Returns  a flat array: allowed (0/1), remaining, retry (µs), reset (µs) per policy;
--          when the decision denies, followed by the time used (Unix µs) and the
--          stored value of each key ("" if none), from which the caller's deny
--          cache re-evaluates the decision locally until its retry time.
-- Every key written gets its TTL in the same SET; a key found without a TTL
-- gets one (PEXPIRE), so no key of the limiter can outlive its relevance.

if redis.replicate_commands then redis.replicate_commands() end -- Redis < 7: replicate effects (TIME)

local now
local slack = 0
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
  slack = 60000
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local floor = math.floor
local function fmt(x) return string.format('%.0f', x) end

-- The common decision, one GCRA policy, takes a straight path without tables
-- or closures (a third of the script's cost in Redis). It computes exactly
-- what the general path below does; values not of the form g:<digits> go to
-- the general path's parser.
if #KEYS == 1 and ARGV[3] == 'g' then
  local t, tau, cost = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local raw = redis.call('GET', KEYS[1])
  local tat = 0
  if raw then
    local v = string.match(raw, '^g:(%d+)$')
    if v then
      tat = tonumber(v)
    else
      tat = nil
    end
  end
  if tat then
    if tat < now then tat = now end
    local newtat = tat + cost * t
    local diff, ok, rem, retry, exp
    if newtat - tau > now then
      ok, rem, retry, diff, exp = 0, 0, newtat - tau - now, tat - now, tat
    else
      ok, rem, retry, diff, exp = 1, floor((tau - (newtat - now)) / t), 0, newtat - now, newtat
    end
    local reset = 0
    if diff > 0 then
      reset = diff % t
      if reset == 0 then reset = t end
    end
    local ttl = math.ceil((exp - now) / 1000)
    if ttl < 1 then ttl = 1 end
    if ok == 1 and ARGV[1] == 'd' then
      redis.call('SET', KEYS[1], 'g:' .. fmt(newtat), 'PX', ttl + slack)
    elseif raw and redis.call('PTTL', KEYS[1]) == -1 then
      redis.call('PEXPIRE', KEYS[1], ttl + slack)
    end
    if ok == 1 or ARGV[7] == '1' then
      return {ok, rem, retry, reset}
    end
    return {ok, rem, retry, reset, now, raw or ''}
  end
end

-- parse returns the stored state of algorithm alg (zero state if none or of another algorithm).
-- A value that does not parse (a foreign writer) is the zero state, as in Go.
local function parse(raw, alg)
  local st = {t = 0, c = 0, p = 0}
  if raw and string.sub(raw, 1, 1) == alg and string.sub(raw, 2, 2) == ':' then
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
    local function reset(diff)
      if diff <= 0 then return 0 end
      local r = diff % t
      if r ~= 0 then return r end
      return t
    end
    if newtat - tau > now then
      return 0, 0, newtat - tau - now, reset(tat - now), nil, tat
    end
    return 1, floor((tau - (newtat - now)) / t), 0, reset(newtat - now), 'g:' .. fmt(newtat), newtat
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

local nkeys = #KEYS
local res = {}
local items = {}
local decided = true
for i = 1, nkeys do
  local base = 3 + 5 * (i - 1)
  local it = {
    alg = ARGV[base], a = tonumber(ARGV[base + 1]), b = tonumber(ARGV[base + 2]),
    cost = tonumber(ARGV[base + 3]), shadow = ARGV[base + 4] == '1',
  }
  it.raw = redis.call('GET', KEYS[i])
  it.st = parse(it.raw, it.alg)
  it.ok, it.rem, it.retry, it.reset, it.next, it.exp = eval(it.alg, it.a, it.b, it.st, it.cost)
  if it.ok == 0 and not it.shadow then decided = false end
  items[i] = it
end

for i = 1, nkeys do
  local it = items[i]
  if not decided and it.ok == 1 then
    -- nothing is consumed: report the quota as it is
    it.ok, it.rem, it.retry, it.reset = eval(it.alg, it.a, it.b, it.st, 0)
    it.next = nil
  end
  if decided and ARGV[1] == 'd' and it.ok == 1 and it.next then
    local ttl = math.ceil((it.exp - now) / 1000)
    if ttl < 1 then ttl = 1 end
    redis.call('SET', KEYS[i], it.next, 'PX', ttl + slack)
  elseif it.raw and redis.call('PTTL', KEYS[i]) == -1 then
    -- repair a key without a TTL (written by something else, or restored)
    local ttl = math.ceil((it.exp - now) / 1000)
    if ttl < 1 then ttl = 1 end
    redis.call('PEXPIRE', KEYS[i], ttl + slack)
  end
  res[4 * i - 3] = it.ok
  res[4 * i - 2] = it.rem
  res[4 * i - 1] = it.retry
  res[4 * i] = it.reset
end
if not decided then
  res[4 * nkeys + 1] = now
  for i = 1, nkeys do
    res[4 * nkeys + 1 + i] = items[i].raw or ''
  end
end
return res
