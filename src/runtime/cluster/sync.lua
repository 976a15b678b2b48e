-- Syncs one approximate counter of one node (runtime/cluster/client.rs).
-- KEYS[1]: the counter's window (a hash: bucket -> count, all nodes);
-- KEYS[2]: its nodes (a hash: node -> "<demand> <ms>", each node's latest sync).
-- ARGV[1]: the node; ARGV[2]: the window's ms; ARGV[3]: the node's demand since its last
-- sync; ARGV[4]: how long a node counts as live after its last sync (ms); then bucket,
-- delta pairs: what the node admitted (or gave back) since its last sync.
-- Returns {the window's total, live nodes, their demand}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function int(x) return string.format('%d', x) end
local size = tonumber(ARGV[2])
local b = math.max(math.floor(size / 20), 1)
local cur = math.floor(now / b)
for i = 5, #ARGV - 1, 2 do
  local bucket, delta = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  -- node clocks may be a little ahead of Redis's
  if bucket and delta and bucket >= cur - 20 and bucket <= cur + 1 then
    local f = int(bucket)
    local v = redis.call('HINCRBY', KEYS[1], f, int(delta))
    if v <= 0 then redis.call('HDEL', KEYS[1], f) end
  end
end
local total = 0
local all = redis.call('HGETALL', KEYS[1])
local stale = {}
for j = 1, #all, 2 do
  local f = tonumber(all[j])
  if f == nil or f < cur - 20 then
    stale[#stale + 1] = all[j]
  else
    total = total + (tonumber(all[j + 1]) or 0)
  end
end
if #stale > 0 then redis.call('HDEL', KEYS[1], unpack(stale)) end
redis.call('PEXPIRE', KEYS[1], size + 2 * b)
local live = tonumber(ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3] .. ' ' .. int(now))
local nodes, demand = 0, 0
local list = redis.call('HGETALL', KEYS[2])
for j = 1, #list, 2 do
  local d, at = string.match(list[j + 1], '^(%d+) (%d+)$')
  if at and tonumber(at) >= now - live then
    nodes = nodes + 1
    demand = demand + tonumber(d)
  else
    redis.call('HDEL', KEYS[2], list[j])
  end
end
redis.call('PEXPIRE', KEYS[2], 2 * math.max(size, live))
return {total, nodes, demand}
