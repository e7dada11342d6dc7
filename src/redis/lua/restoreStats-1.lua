--[[
  Restores a downstream's counters from their Postgres snapshot when Redis lost them
  (fresh or flushed Redis). Counters that exist are left alone: Redis is the live truth.

  Input:
    KEYS[1] stats (hash)
    ARGV[1..] field, value pairs from the snapshot

  Output: 1 restored, 0 left alone
]]
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return 1
