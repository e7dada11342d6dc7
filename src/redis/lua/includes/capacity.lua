--[[
  Capacity in use on a downstream, in total and per tenant (cost units of admitted, unfinished jobs):
  read, charged at admission, refunded when a job ends. Kept for the call in a drain (ctx.counters,
  counters.lua); read and written directly otherwise.

  Keys under G:
    ds:<d>:used              string capacity units in use
    ds:<d>:tin               hash   tenant -> capacity units it has in flight
]]
--- @include "base"

local function tenantInflight(ctx, ds, tenant)
  local c = ctx.counters
  if not c then return tonumber(rcall('HGET', dsKey(ctx, ds, DK.tenantInflight), tenant)) or 0 end
  local v = c.tin[tenant]
  if v == nil then
    v = tonumber(rcall('HGET', dsKey(ctx, ds, DK.tenantInflight), tenant)) or 0
    c.tin[tenant] = v
  end
  return v
end

local function usedOf(ctx, ds)
  local c = ctx.counters
  if not c then return tonumber(rcall('GET', dsKey(ctx, ds, DK.used))) or 0 end
  if c.used == nil then c.used = tonumber(rcall('GET', dsKey(ctx, ds, DK.used))) or 0 end
  return c.used
end

-- Takes a job's cost from the downstream's capacity and the tenant's share of it.
local function chargeCapacity(ctx, ds, tenant, cost)
  local c = ctx.counters
  if not c then
    rcall('INCRBY', dsKey(ctx, ds, DK.used), cost)
    rcall('HINCRBY', dsKey(ctx, ds, DK.tenantInflight), tenant, cost)
    return
  end
  c.used = usedOf(ctx, ds) + cost
  c.tin[tenant] = tenantInflight(ctx, ds, tenant) + cost
  c.usedDelta = c.usedDelta + cost
  c.tinDelta[tenant] = counterFor(c.tinDelta, c.tinTenants, tenant, 0) + cost
end

local function refundCapacity(ctx, ds, tenant, cost)
  if rcall('DECRBY', dsKey(ctx, ds, DK.used), cost) < 0 then rcall('SET', dsKey(ctx, ds, DK.used), 0) end
  if rcall('HINCRBY', dsKey(ctx, ds, DK.tenantInflight), tenant, -cost) <= 0 then rcall('HDEL', dsKey(ctx, ds, DK.tenantInflight), tenant) end
end
