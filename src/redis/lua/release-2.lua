--[[
  Releases admitted jobs that finished (or vanished), idempotently: each job is counted once,
  however many times its completion event is delivered or the sweep finds it.

  Input:
    KEYS[1] inflight  (zset)  admitted, unfinished jobs: ingress id -> admission time (ms)
    KEYS[2] stats     (hash)  decision and outcome counters of the downstream

    ARGV[1] record key prefix  ('<prefix>:gov:{<downstream>}:rec:')
    ARGV[2] now (ms)
    ARGV[3] retention (ms)     records are kept this long after the outcome
    ARGV[4..] per job, 2 values: ingress id, outcome ('completed' | 'failed' | 'vanished')

  Output: one integer per job: 1 released now, 0 already released or never admitted
]]
local rcall = redis.call
local inflightKey = KEYS[1]
local statsKey = KEYS[2]
local recPrefix = ARGV[1]
local now = ARGV[2]
local retention = tonumber(ARGV[3])

local out = {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local outcome = ARGV[i + 1]
  local recKey = recPrefix .. id
  local state = rcall('HGET', recKey, 'st')
  local wasInflight = rcall('ZREM', inflightKey, id)
  if state == 'admitted' or (not state and wasInflight == 1) then
    -- A record that expired while its job was still running is released through the zset alone.
    if state then
      rcall('HSET', recKey, 'st', outcome, 'fin', now)
      rcall('PEXPIRE', recKey, retention)
    end
    rcall('HINCRBY', statsKey, outcome, 1)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
