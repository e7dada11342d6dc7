--[[
  Makes waiting flows eligible again after a governance change (a quota edited, paused or resumed, a
  throttle added or removed), so the scheduler re-evaluates them at once instead of at their timer.

  Input:
    KEYS[1] any key of the governance slot
    ARGV[1] G    ARGV[2] downstreams, comma-separated    ARGV[3] tenant ('' = every waiting tenant)
    ARGV[4] '1' to also re-queue every queued tenant in the tier the (new) policy gives it
    ARGV[5] now (ms)

  Output: flows made eligible
]]
--- @include "base"
--- @include "policy"
--- @include "schedule"
--- @include "flows"

local ctx = newContext(ARGV[1], tonumber(ARGV[5]) or 0)
local n = 0
for _, ds in ipairs(split(ARGV[2], ',')) do
  if ARGV[4] == '1' then
    local p = policyOf(ctx, ds)
    for _, t in ipairs(rcall('HKEYS', dsKey(ctx, ds, DK.tenantTiers))) do
      local vt = schedRemove(ctx, ds, t)
      if vt then schedPut(ctx, ds, p, t, vt) end
    end
  end
  local tenants
  if ARGV[3] ~= '' then tenants = { ARGV[3] } else tenants = rcall('HKEYS', dsKey(ctx, ds, DK.waitingCounts)) end
  for _, tenant in ipairs(tenants) do n = n + wakeTenant(ctx, ds, tenant, false) end
end
return n
