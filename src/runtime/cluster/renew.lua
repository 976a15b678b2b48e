-- Renews one request's concurrency lease (runtime/cluster/client.rs): KEYS[1] the leases,
-- ARGV[1] the member, ARGV[2] a lease's life in ms. A lease that expired is not renewed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = redis.call('ZADD', KEYS[1], 'XX', 'CH', string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
if n > 0 then redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2])) end
return n
