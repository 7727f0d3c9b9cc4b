-- presence_set.lua: insert or replace one presence member, owned by the calling gateway.
--
-- KEYS[1] presence hash of the channel (clientId -> "gw\njoin_ms\nmember_json")
-- KEYS[2] owned set of the calling gateway (pairs it added)
-- ARGV[1] clientId   ARGV[2] calling gateway id   ARGV[3] join time (ms)
-- ARGV[4] member JSON   ARGV[5] the (channel, clientId) pair as JSON   ARGV[6] key prefix
-- ARGV[7] '1' = split mode (Redis Cluster): only KEYS[1] is touched; the caller keeps the
--   owned sets (they live in another slot) and KEYS[2] is not passed
-- Returns the join time stored: a replaced member keeps its first one. Ownership moves
-- to the calling gateway (the pair leaves the previous owner's set). The previous owner's
-- key name is built here, at run time, so on Redis Cluster the script runs in split mode
-- and returns the previous owner's id instead ('' = none) for the caller to update.
local old = redis.call('HGET', KEYS[1], ARGV[1])
local t = ARGV[3]
local ogw = nil
if old then
  local ot
  ogw, ot = string.match(old, '^([^\n]*)\n([^\n]*)\n')
  if ot then t = ot end
  if ARGV[7] ~= '1' and ogw and ogw ~= ARGV[2] then
    redis.call('SREM', ARGV[6] .. ':gw:' .. ogw .. ':owned', ARGV[5])
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '\n' .. t .. '\n' .. ARGV[4])
if ARGV[7] == '1' then return ogw or '' end
redis.call('SADD', KEYS[2], ARGV[5])
return t
