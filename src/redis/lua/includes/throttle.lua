--[[
  Throttles, as the quota evaluation sees them (evaluate.lua): which apply to a tenant, and a slow
  throttle's GCRA TAT.

  Keys under G:
    th                       hash   throttle id -> cjson definition
    th-t:<tenant>, th-any    set    throttle ids by tenant (th-any: throttles for every tenant)
    ths:<throttle>           string GCRA tat of a slow throttle (written by evaluate.lua's take/flushStates)
]]
--- @include "base"

local function tenantThrottles(ctx, tenant)
  local list = ctx.throttles[tenant]
  if ctx.anyThrottles == nil then ctx.anyThrottles = rcall('EXISTS', ctx.G .. GK.throttles) == 1 end
  if not list and not ctx.anyThrottles then
    list = {}
    ctx.throttles[tenant] = list
  elseif not list then
    list = {}
    local ids = rcall('SUNION', ctx.G .. GF.throttlesOf .. tenant, ctx.G .. GK.throttlesAny)
    for _, id in ipairs(ids) do
      local raw = rcall('HGET', ctx.G .. GK.throttles, id)
      if raw then list[#list + 1] = clampRate(cjson.decode(raw)) end
    end
    ctx.throttles[tenant] = list
  end
  return list
end

-- A slow throttle's GCRA TAT (cached for the call like quota states).
local function throttleTat(ctx, id)
  if ctx.states and ctx.thrTats[id] then return ctx.thrTats[id] end
  local tat = tonumber(rcall('GET', ctx.G .. GF.throttleState .. id)) or 0
  if ctx.states then ctx.thrTats[id] = tat end
  return tat
end
