-- presence_remove.lua: remove one presence member, at most once across all gateways.
--
-- KEYS[1] presence hash of the channel (clientId -> "gw\njoin_ms\nmember_json")
-- ARGV[1] clientId   ARGV[2] required owner gateway id ('' = any owner)
-- ARGV[3] the (channel, clientId) pair as JSON   ARGV[4] key prefix
-- ARGV[5] '1' = only if the owner's liveness key is gone (a sweep), '0' = regardless
-- ARGV[6] '1' = split mode (Redis Cluster): only KEYS[1] is touched; the caller checked the
--   owner's liveness before and removes the pair from its owned set after (another slot)
-- Returns the removed record, or false (absent, another owner, or the owner is alive).
-- The HDEL happens once, so of many gateways sweeping one dead member exactly one gets
-- the record and broadcasts its leave. The liveness re-check is atomic with the removal:
-- an owner that came back (and restored its members) between a sweeper's check and this
-- call keeps them.
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return false end
local gw = string.match(v, '^([^\n]*)\n')
if ARGV[2] ~= '' and gw ~= ARGV[2] then return false end
local split = ARGV[6] == '1'
if not split and ARGV[5] == '1' and gw and redis.call('EXISTS', ARGV[4] .. ':gw:' .. gw) == 1 then
  return false
end
redis.call('HDEL', KEYS[1], ARGV[1])
if gw and not split then redis.call('SREM', ARGV[4] .. ':gw:' .. gw .. ':owned', ARGV[3]) end
return v
