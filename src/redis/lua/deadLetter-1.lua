--[[
  Records that jobs were refused before routing (or at the gate) and sent to the dead-letter queue,
  idempotently: a job retried after its gate died is counted once. Each delivery is first resolved to
  its job key (includes/instance.lua), so a job that reuses an earlier job's id gets a record and a
  dead-letter job of its own.

  Input:
    KEYS[1] any key of the governance slot
    ARGV[1] G   ARGV[2] now (ms)   ARGV[3] retention (ms)   ARGV[4] downstream ('' when unrouted)
    ARGV[5..] per job, 7 values: ingress id, stamp, '1' / '0' / '' as intake's (a dead-letter or
              execution job already has the id of its first instance), reason, code, message, tenant id
              ('' when unknown)

  Output: per job, 2 values: 'N' recorded now or 'E' already recorded, and the job key
]]
--- @include "base"
--- @include "records"
--- @include "instance"

local ctx = newContext(ARGV[1], tonumber(ARGV[2]))
ctx.retention = tonumber(ARGV[3])
local ds = ARGV[4]
local out = {}
for i = 5, #ARGV, 7 do
  local id, ts, taken, reason, code, msg, tenant = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  -- Tenant unknown (refused before it was read): instances of one id are told apart by stamp alone.
  local key, kind = resolveInstance(ctx.G, ctx.retention, id, ts, tenant ~= '' and tenant or '\0', taken)
  if kind == 'known' and rcall('HGET', ctx.G .. GF.record .. key, 'st') == 'dead' then
    out[#out + 1] = 'E'
  else
    recordDead(ctx, key, ds, tenant, reason, code, msg)
    rcall('HSET', ctx.G .. GF.record .. key, 'ts', ts)
    out[#out + 1] = 'N'
  end
  out[#out + 1] = key
end
return out
