-- gap.lua: the stored events a subscriber missed, read atomically with the channel's epoch.
--
-- KEYS[1] epoch   KEYS[2] events (stream)
-- ARGV[1] the epoch the subscriber knows ('' = none)
-- ARGV[2] the id of the newest event it has ('' = none: from the start)
-- Returns {} when the channel has no epoch (nothing stored since, e.g. an empty restart),
-- else {epoch, id1, payload1, id2, payload2, ...}: the events after ARGV[2] when the epoch
-- is ARGV[1], every retained event when it changed (all of them are newer), oldest first.
local epoch = redis.call('GET', KEYS[1])
if not epoch then return {} end
local entries
if epoch == ARGV[1] then
  local start = '-'
  if ARGV[2] ~= '' then start = '(' .. ARGV[2] end
  entries = redis.call('XRANGE', KEYS[2], start, '+')
else
  entries = redis.call('XRANGE', KEYS[2], '-', '+')
end
local out = {epoch}
for _, e in ipairs(entries) do
  out[#out + 1] = e[1]
  out[#out + 1] = e[2][2]  -- the entry's only field, "f": the frame without its id
end
return out
