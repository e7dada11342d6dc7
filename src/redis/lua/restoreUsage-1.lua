--[[
  Gives a Redis that lost its state (fresh or flushed) the period usage of the current windows from
  the Postgres ledger, once: the marker records that this Redis has it. Usage counted since the loss
  (gates kept admitting) is added to, not overwritten.

  Input:
    KEYS[1] marker (string)
    ARGV[1..] per entry, 5 values: quota state key, window field, count field, window start, used

  Output: 1 restored now, 0 already restored
]]
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 1, #ARGV, 5 do
  local key, wf, nf, window, used = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
  if redis.call('HGET', key, wf) == window then
    redis.call('HINCRBY', key, nf, used)
  else
    redis.call('HSET', key, wf, window, nf, used)
  end
end
redis.call('SET', KEYS[1], '1')
return 1
