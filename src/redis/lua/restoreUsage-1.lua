--[[
  Gives a Redis that lost its state (fresh or flushed) the period usage of the current windows from
  the Postgres ledger, once: the marker records that this Redis has it. Usage counted since the loss
  (gates kept admitting) is added to, not overwritten.

  Input:
    KEYS[1] marker (string)
    ARGV[1] G (the governance prefix)
    ARGV[2..] per entry, 6 values: quota id, tenant, window field, count field, window start, used

  Output: 1 restored now, 0 already restored
]]
--- @include "keys"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local G = ARGV[1]
for i = 2, #ARGV, 6 do
  local key = G .. GF.quotaState .. ARGV[i] .. ':' .. ARGV[i + 1]
  local wf, nf, window, used = ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
  if redis.call('HGET', key, wf) == window then
    redis.call('HINCRBY', key, nf, used)
  else
    redis.call('HSET', key, wf, window, nf, used)
  end
end
redis.call('SET', KEYS[1], '1')
return 1
