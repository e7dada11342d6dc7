--[[
  Restores a downstream's counters from their Postgres snapshot into a Redis that lost them (fresh or
  flushed), once: the marker key records that this Redis has them. Counts made since the loss (by
  gates that kept working) are added to, not overwritten.

  Input:
    KEYS[1] stats    (hash)    counters
    KEYS[2] restored (string)  marker: present once the snapshot was applied to this Redis
    ARGV[1..] field, value pairs from the snapshot (may be empty: nothing saved yet)

  Output: 1 restored now, 0 already restored
]]
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
for i = 1, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('SET', KEYS[2], '1')
return 1
