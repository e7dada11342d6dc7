--[[
  Releases admitted jobs that ended (or vanished), idempotently: each is counted once, its quota slot
  is given back, and flows of its tenant parked for want of a slot become eligible again.

  Input:
    KEYS[1] <G>ds:<ds>:inflight (zset)  declares the governance slot
    ARGV[1] G   ARGV[2] now (ms)   ARGV[3] retention (ms)   ARGV[4] downstream
    ARGV[5] every downstream of the slot, comma-separated (a tenant's flows on all of them may wake)
    ARGV[6..] per job, 2 values: ingress id, outcome ('completed' | 'failed' | 'vanished')

  A job still under a promotion lease (admitted from the waiting place, add not confirmed) is not
  released as 'vanished': its execution job may simply not exist yet, and lease recovery will add it.

  Output: { released per job (1/0)..., downstreams whose scheduler should look again (comma-separated) }
    A downstream is named when a flow of it was woken, or when it is this job's downstream (capacity came
    back) and it has eligible flows waiting for it.
]]
--- @include "governance"

local ctx = newContext(ARGV[1], tonumber(ARGV[2]))
local retention = tonumber(ARGV[3])
local ds = ARGV[4]
local all = split(ARGV[5], ',')
local inflight = KEYS[1]
local stats = dsKey(ctx, ds, 'stats')

local out = {}
local wake = {}
for i = 6, #ARGV, 2 do
  local id, outcome = ARGV[i], ARGV[i + 1]
  local rec = ctx.G .. 'rec:' .. id
  local v = rcall('HMGET', rec, 'st', 'qk', 't', 'cost')
  local leased = outcome == 'vanished' and rcall('ZSCORE', dsKey(ctx, ds, 'promoting'), id)
  local wasInflight = 0
  if not leased then wasInflight = rcall('ZREM', inflight, id) end
  if leased then
    out[#out + 1] = 0
  elseif v[1] == 'admitted' or ((not v[1]) and wasInflight == 1) then
    if v[1] then
      rcall('HSET', rec, 'st', outcome, 'fin', fmt(ctx.now))
      rcall('HDEL', rec, 'p')
      rcall('PEXPIRE', rec, retention)
      rcall('ZREM', dsKey(ctx, ds, 'promoting'), id)
      if v[2] and v[3] then
        giveBack(ctx, v[2], v[3], tonumber(v[4]) or 1)
        wake[v[3]] = true
      end
      if v[3] then
        refundCapacity(ctx, ds, v[3], tonumber(v[4]) or 1)
        retier(ctx, ds, v[3])
      end
    end
    rcall('HINCRBY', stats, outcome, 1)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
local toWake = {}
for tenant in pairs(wake) do
  for _, d in ipairs(all) do
    if wakeTenant(ctx, d, tenant, true) > 0 then toWake[d] = true end
  end
end
if not schedEmpty(ctx, ds) then toWake[ds] = true end
local names = {}
for d in pairs(toWake) do names[#names + 1] = d end
out[#out + 1] = table.concat(names, ',')
return out
