--[[
  Advances the version of the definitions mirrored in Redis, only from the version just before:
  a gap means some change was not mirrored, and the sync rebuilds the mirror then.

  Input:
    KEYS[1] mirror version (string)
    ARGV[1] the version the change started from   ARGV[2] the version after the change

  Output: 1 advanced, 0 left behind (the sync will rebuild)
]]
local current = redis.call('GET', KEYS[1]) or '0'
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
