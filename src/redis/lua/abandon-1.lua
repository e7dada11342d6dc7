--[[
  Admitted jobs whose execution add cannot succeed (BullMQ refuses the job, or the add failed on every
  attempt allowed): counts the failed attempt, and once the job is out of attempts (or at once, for a
  refusal that would repeat) gives back what its admission took (its place in flight, the downstream's
  capacity, its quota's concurrency slot) and records it dead-lettered, so it never keeps a slot or
  stays in ingress for good. Idempotent per job: a job no longer admitted is left alone.

  Input:
    KEYS[1] <G>ds:<ds>:inflight (zset)  declares the governance slot
    ARGV[1..12]  governance context (see intake)
    ARGV[13] downstream   ARGV[14] every downstream of the slot, comma-separated (a freed quota slot
             wakes the tenant's parked flows on any of them)
    ARGV[15] dead-letter lease (ms) for jobs with no ingress job left to retry the dead-letter add
             (admitted from the waiting place), '' for jobs the gate still holds in ingress
    ARGV[16] attempts allowed: the job is given up when its failures reach this many (1: at once)
    ARGV[17..] per job, 4 values: job key, reason, code, message

  Output: { per job: 'G' given up (dead-letter it now), 'T' try again later, 'N' not admitted (nothing
            done); then the downstreams whose schedulers should look again, comma-separated }
]]
--- @include "base"
--- @include "quota"
--- @include "capacity"
--- @include "schedule"
--- @include "flows"
--- @include "records"

local ctx = contextFromArgs()
local ds = ARGV[13]
local all = split(ARGV[14], ',')
local lease = tonumber(ARGV[15])
local allowed = tonumber(ARGV[16]) or 1
local toWake = {}
local inflight = KEYS[1]
local out = {}
local given = 0
for i = CONTEXT_ARGS + 5, #ARGV, 4 do
  local key, reason, code, msg = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local rec = ctx.G .. GF.record .. key
  local v = rcall('HMGET', rec, 'st', 'qk', 't', 'cost')
  if v[1] ~= 'admitted' then
    out[#out + 1] = 'N'
  elseif rcall('HINCRBY', rec, 'pf', 1) < allowed then
    out[#out + 1] = 'T'
  else
    local cost = tonumber(v[4]) or 1
    rcall('ZREM', inflight, key)
    rcall('ZREM', dsKey(ctx, ds, DK.promoting), key)
    if v[2] and v[3] then giveBack(ctx, v[2], v[3], cost) end
    if v[3] then
      refundCapacity(ctx, ds, v[3], cost)
      retier(ctx, ds, v[3])
      for _, d in ipairs(all) do
        if wakeTenant(ctx, d, v[3], true) > 0 then toWake[d] = true end
      end
    end
    recordDead(ctx, key, ds, v[3], reason, code, msg, lease and (ctx.now + lease) or nil)
    given = given + 1
    out[#out + 1] = 'G'
  end
end
-- The job counts once, as dead-lettered: it never ran.
if given > 0 then
  rcall('HINCRBY', dsKey(ctx, ds, DK.stats), 'admitted', -given)
  if not schedEmpty(ctx, ds) then toWake[ds] = true end
end
local names = {}
for d in pairs(toWake) do names[#names + 1] = d end
out[#out + 1] = table.concat(names, ',')
return out
