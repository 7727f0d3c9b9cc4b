-- snapshot.lua: everything a (re)subscribing client needs, read atomically.
--
-- KEYS[1] offset   KEYS[2] epoch   KEYS[3] events (stream)   KEYS[4] state (hash)
-- ARGV[1] new epoch (created, and kept, if KEYS[2] is missing)
-- ARGV[2] last event id the client has ('' = none; a stream id, '0-0' for a malformed one)
-- ARGV[3] the client's epoch ('' = none)
-- ARGV[4] history: how many newest events to send when not resuming (0 = none; all
--         retained ones when a resume fails)
-- ARGV[5] '1' = return the keyed state even when recovered
-- ARGV[6] channel TTL in ms ('' = keep: a newly created epoch expires like the channel)
-- Returns {epoch, offset, latest event id ('' = none), recovered ('' = not asked,
-- '1', '0'), n, n full event frames oldest first, then state key/frame pairs (when
-- ARGV[5] is '1' or the resume failed)}.
-- Recovered only if ARGV[2] is still in the stream: then everything after it is too.
local function full(e)
  return '{"id":"' .. e[1] .. '","eventId":"' .. e[1] .. '",' .. e[2][2]
end
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  if ARGV[6] ~= '' then
    redis.call('SET', KEYS[2], epoch, 'PX', ARGV[6])
  else
    redis.call('SET', KEYS[2], epoch)
  end
end
local offset = redis.call('GET', KEYS[1]) or '0'
local newest = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local latest = ''
if newest[1] then latest = newest[1][1] end
local history = tonumber(ARGV[4])
local recovered = ''
local entries = {}
if ARGV[2] ~= '' then
  recovered = '0'
  if ARGV[3] == '' or ARGV[3] == epoch then
    -- the id must still be retained: then everything after it is too
    if redis.call('XRANGE', KEYS[3], ARGV[2], ARGV[2])[1] then
      recovered = '1'
      entries = redis.call('XRANGE', KEYS[3], '(' .. ARGV[2], '+')
    end
  end
  if recovered == '0' then
    if history == 0 then
      entries = redis.call('XRANGE', KEYS[3], '-', '+')
    else
      local rev = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', history)
      for i = #rev, 1, -1 do entries[#entries + 1] = rev[i] end
    end
  end
elseif history > 0 then
  local rev = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', history)
  for i = #rev, 1, -1 do entries[#entries + 1] = rev[i] end
end
local out = {epoch, offset, latest, recovered, tostring(#entries)}
for _, e in ipairs(entries) do out[#out + 1] = full(e) end
if ARGV[5] == '1' or recovered == '0' then
  local st = redis.call('HGETALL', KEYS[4])
  for _, v in ipairs(st) do out[#out + 1] = v end
end
return out
