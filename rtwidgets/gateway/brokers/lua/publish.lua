-- publish.lua: store one message frame and fan it out, atomically (one round trip).
--
-- KEYS[1] offset (INCR counter)        KEYS[2] epoch (string)
-- KEYS[3] events (stream: history)     KEYS[4] state (hash key -> latest frame)
-- KEYS[5] msgids (hash msgId -> event id)   KEYS[6] msgq (list: FIFO of msgIds)
-- ARGV[1] new epoch (used only if KEYS[2] is missing)
-- ARGV[2] body: the frame's JSON object without id/eventId/offset/epoch
-- ARGV[3] pub/sub channel to PUBLISH the frame on
-- ARGV[4] history size (stream MAXLEN, also the msgId dedupe window)
-- ARGV[5] state key ('' = none)        ARGV[6] '1' = delete that key, '0' = set it
-- ARGV[7] msgId ('' = none)            ARGV[8] state_max_keys
-- ARGV[9] trim mode for XADD MAXLEN ('=' exact, '~' approximate)
-- ARGV[10] channel TTL in ms ('' = keep: every channel key is PEXPIREd on each publish)
-- ARGV[11] fan-out command: 'SPUBLISH' on Redis Cluster (sharded pub/sub); absent = PUBLISH
-- KEYS[7] (Redis Cluster only) lineage: the replication id of the shard that last wrote the
--   channel. When this node was promoted from that lineage (a failover: its master_replid2
--   is the stored id), writes the old master acknowledged may never have reached it, and
--   its offsets would be issued again under the same epoch; the channel gets a new epoch
--   (ARGV[1]) instead, so every reader sees the loss (recovered: false), never a silent gap.
--   Another id (the slot was migrated with its keys) keeps the epoch.
-- Returns {'ok', event id, offset, epoch}; {'dup', earlier full frame JSON} when the
-- msgId is still in the window (nothing stored or sent); {'state_full', key count}
-- when a new key would exceed ARGV[8] (nothing stored).
-- The id fields are spliced in as text so user data is never re-encoded by cjson.
local function full(sid, stored)
  return '{"id":"' .. sid .. '","eventId":"' .. sid .. '",' .. stored
end
if ARGV[7] ~= '' then
  local sid = redis.call('HGET', KEYS[5], ARGV[7])
  if sid then
    local e = redis.call('XRANGE', KEYS[3], sid, sid)
    if e[1] then return {'dup', full(sid, e[1][2][2])} end
  end
end
if ARGV[5] ~= '' and ARGV[6] == '0' and redis.call('HEXISTS', KEYS[4], ARGV[5]) == 0 then
  local n = redis.call('HLEN', KEYS[4])
  if n >= tonumber(ARGV[8]) then return {'state_full', tostring(n)} end
end
local epoch = redis.call('GET', KEYS[2])
if KEYS[7] then
  local info = redis.call('INFO', 'replication')
  local id = string.match(info, 'master_replid:(%x+)')
  local seen = redis.call('GET', KEYS[7])
  if seen ~= id then
    if epoch and seen and seen == string.match(info, 'master_replid2:(%x+)') then epoch = nil end
    redis.call('SET', KEYS[7], id)
  end
end
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch)
end
local offset = redis.call('INCR', KEYS[1])
local stored = '"offset":' .. offset .. ',"epoch":"' .. epoch .. '",' .. string.sub(ARGV[2], 2)
local sid = redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[9], ARGV[4], '*', 'f', stored)
local frame = full(sid, stored)
if ARGV[5] ~= '' then
  if ARGV[6] == '1' then
    redis.call('HDEL', KEYS[4], ARGV[5])
  else
    redis.call('HSET', KEYS[4], ARGV[5], frame)
  end
end
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[5], ARGV[7], sid)
  redis.call('RPUSH', KEYS[6], ARGV[7])
  if redis.call('LLEN', KEYS[6]) > tonumber(ARGV[4]) then
    local old = redis.call('LPOP', KEYS[6])
    redis.call('HDEL', KEYS[5], old)
  end
end
if ARGV[10] ~= '' then
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[10]) end
end
redis.call(ARGV[11] or 'PUBLISH', ARGV[3], frame)
return {'ok', sid, tostring(offset), epoch}
