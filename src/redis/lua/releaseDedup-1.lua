--[[
  Ends the hold of simple-mode deduplication ids whose jobs ended (their execution job completed or
  failed for good, vanished, or they were dead-lettered): each id's key is deleted if it still names
  the job's ingress id, as BullMQ deletes it when a job with that id finishes, and the ingress job's
  hash kept for the hold (marked 'tgheld') goes with it. Idempotent.

  Input:
    KEYS[1] held deduplication ids (hash: job key -> dedup id, '\n', ingress id; finishIngress-6.lua)
    ARGV[1] the ingress queue's key prefix   ARGV[2..] job keys
  Output: how many holds ended
]]
local rcall = redis.call
local n = 0
for i = 2, #ARGV, 1000 do
  local keys = { unpack(ARGV, i, math.min(i + 999, #ARGV)) }
  local held = rcall('HMGET', KEYS[1], unpack(keys))
  local gone = {}
  for k, v in ipairs(held) do
    if v then
      local cut = string.find(v, '\n', 1, true)
      local dedupKey = ARGV[1] .. 'de:' .. string.sub(v, 1, cut - 1)
      local id = string.sub(v, cut + 1)
      if rcall('GET', dedupKey) == id then rcall('DEL', dedupKey) end
      if rcall('HEXISTS', ARGV[1] .. id, 'tgheld') == 1 then rcall('DEL', ARGV[1] .. id) end
      gone[#gone + 1] = keys[k]
    end
  end
  if #gone > 0 then n = n + rcall('HDEL', KEYS[1], unpack(gone)) end
end
return n
