-- Settles what one request took, once (runtime/cluster/client.rs).
-- KEYS[1]: the request's marker (a second call with it changes nothing);
-- KEYS[2..]: the counters. ARGV[1]: the lease member; then four per counter:
--   kind ("w", "d", "m", "c"), size (a window's ms), at (bucket or period of the take),
--   delta (tokens to add or give back; a lease is released).
-- Returns 1, or 0 when the marker says it was done already (markers live 60 s:
-- runtime/cluster/hold.rs MARKER_MS; older work is not sent again).
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', 60000) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function int(x) return string.format('%d', x) end
for i = 2, #KEYS do
  local a = 1 + (i - 2) * 4
  local kind, size = ARGV[a + 1], tonumber(ARGV[a + 2])
  local at, delta = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local key = KEYS[i]
  local field = nil
  if kind == 'c' then
    redis.call('ZREM', key, ARGV[1])
  elseif kind == 'w' then
    local b = math.max(math.floor(size / 20), 1)
    local cur = math.floor(now / b)
    if at >= cur - 20 and at <= cur then
      field = at
    elseif delta > 0 then
      -- the reservation aged out; the tokens were used all the same
      field = cur
    end
    if field and delta > 0 then redis.call('PEXPIRE', key, size + 2 * b) end
  else
    -- a quota: the admit script keeps the current period's field only
    if redis.call('HEXISTS', key, int(at)) == 1 then
      field = at
    elseif delta > 0 then
      -- the reservation's period is over: the tokens count in the newest period held
      field = at
      for _, f in ipairs(redis.call('HKEYS', key)) do
        local n = tonumber(f)
        if n and n > field then field = n end
      end
    end
    if field and delta > 0 then
      redis.call('PEXPIRE', key, (kind == 'd' and 2 or 33) * 86400000)
    end
  end
  if field then
    local f = int(field)
    if delta > 0 or redis.call('HEXISTS', key, f) == 1 then
      local v = redis.call('HINCRBY', key, f, int(delta))
      if v <= 0 then redis.call('HDEL', key, f) end
    end
  end
end
return 1
