--[[
  Confirms that admitted jobs from the waiting place were added to their execution queue: their
  promotion lease ends and the stored payload is dropped.

  Input:
    KEYS[1] <G>ds:<ds>:promoting (zset)
    ARGV[1] G    ARGV[2..] ingress ids

  Output: number of leases ended
]]
local rcall = redis.call
local n = 0
for i = 2, #ARGV do
  n = n + rcall('ZREM', KEYS[1], ARGV[i])
  rcall('HDEL', ARGV[1] .. 'rec:' .. ARGV[i], 'p')
end
return n
