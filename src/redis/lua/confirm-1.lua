--[[
  Confirms that jobs leased out of the waiting place were added where they go: to their execution
  queue (KEYS[1] = the promotion leases) or to the dead-letter queue (KEYS[1] = the dead-letter
  leases). The lease ends and the stored payload is dropped.

  Input:
    KEYS[1] <G>ds:<ds>:promoting or <G>ds:<ds>:dlpending (zset)
    ARGV[1] G    ARGV[2..] ingress ids

  Output: number of leases ended
]]
--- @include "keys"
local rcall = redis.call
local n = 0
for i = 2, #ARGV do
  n = n + rcall('ZREM', KEYS[1], ARGV[i])
  rcall('HDEL', ARGV[1] .. GF.record .. ARGV[i], 'p')
end
return n
