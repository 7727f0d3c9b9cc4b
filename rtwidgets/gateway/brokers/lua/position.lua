-- position.lua: where a channel stands, read atomically (attach reads it before subscribing).
--
-- KEYS[1] epoch   KEYS[2] offset   KEYS[3] events (stream)
-- ARGV[1] none: the script takes no arguments
-- Returns {epoch (nil = none yet), offset ('0' = none), newest event id ('' = none)}.
local epoch = redis.call('GET', KEYS[1])
local offset = redis.call('GET', KEYS[2]) or '0'
local newest = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local latest = ''
if newest[1] then latest = newest[1][1] end
return {epoch, offset, latest}
