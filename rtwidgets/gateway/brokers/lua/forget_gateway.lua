-- forget_gateway.lua: forget a swept (dead) gateway, unless it came back meanwhile.
--
-- KEYS[1] liveness key of the dead gateway   KEYS[2] its owned set
-- KEYS[3] the set of all gateway ids
-- ARGV[1] the dead gateway's id
-- Returns 1 when forgotten (owned set deleted, id removed from KEYS[3]); 0 when its
-- liveness key exists again (it is alive: nothing changed).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
