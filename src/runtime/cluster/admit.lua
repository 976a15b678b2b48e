-- Takes every counter of one request, or none (runtime/cluster/client.rs).
-- KEYS: the request's counters (one namespace: one hash tag).
-- ARGV[1]: the lease member; ARGV[2]: a lease's life in ms; then five per counter:
--   kind ("w" window, "d" day quota, "m" month quota, "c" concurrency leases),
--   size (a window's ms), limit, amount, dry run ("1": counts, never refuses).
-- Returns {refused (0: all taken; i: counter i refused, nothing taken), now_ms,
--   {used, at, bucket, count, bucket, count, ...} per counter}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function int(x) return string.format('%d', x) end
local function month(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y * 12 + m - 1
end
local function period(kind)
  local days = math.floor(now / 86400000)
  if kind == 'd' then return days end
  return month(days)
end
local refused = 0
local at = {}
local out = {0, now}
for i = 1, #KEYS do
  local a = 2 + (i - 1) * 5
  local kind, size = ARGV[a + 1], tonumber(ARGV[a + 2])
  local limit, amount = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local key = KEYS[i]
  local used = 0
  local row = {}
  if kind == 'w' then
    local cur = math.floor(now / math.max(math.floor(size / 20), 1))
    at[i] = cur
    local all = redis.call('HGETALL', key)
    local stale = {}
    for j = 1, #all, 2 do
      local f, v = tonumber(all[j]), tonumber(all[j + 1]) or 0
      if f == nil or f < cur - 20 then
        stale[#stale + 1] = all[j]
      elseif f <= cur then
        used = used + v
        row[#row + 1] = f
        row[#row + 1] = v
      end
    end
    if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  elseif kind == 'd' or kind == 'm' then
    local p = period(kind)
    at[i] = p
    local all = redis.call('HGETALL', key)
    for j = 1, #all, 2 do
      if tonumber(all[j]) == p then
        used = tonumber(all[j + 1]) or 0
      else
        redis.call('HDEL', key, all[j])
      end
    end
  else
    at[i] = 0
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    used = redis.call('ZCARD', key)
  end
  if refused == 0 and ARGV[a + 5] ~= '1' and used + amount > limit then refused = i end
  local rep = {used, at[i]}
  for _, x in ipairs(row) do rep[#rep + 1] = x end
  out[i + 2] = rep
end
out[1] = refused
if refused == 0 then
  local lease = tonumber(ARGV[2])
  for i = 1, #KEYS do
    local a = 2 + (i - 1) * 5
    local kind, size = ARGV[a + 1], tonumber(ARGV[a + 2])
    local key = KEYS[i]
    if kind == 'w' then
      redis.call('HINCRBY', key, int(at[i]), ARGV[a + 4])
      redis.call('PEXPIRE', key, size + 2 * math.max(math.floor(size / 20), 1))
    elseif kind == 'd' or kind == 'm' then
      redis.call('HINCRBY', key, int(at[i]), ARGV[a + 4])
      redis.call('PEXPIRE', key, (kind == 'd' and 2 or 33) * 86400000)
    else
      redis.call('ZADD', key, int(now + lease), ARGV[1])
      redis.call('PEXPIRE', key, 2 * lease)
    end
  end
end
return out
