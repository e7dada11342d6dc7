--[[
  Makes waiting flows eligible again after a governance change (a quota edited, paused or resumed, a
  throttle added or removed), so the scheduler re-evaluates them at once instead of at their timer.

  Input:
    KEYS[1] any key of the governance slot
    ARGV[1] G    ARGV[2] downstreams, comma-separated    ARGV[3] tenant ('' = every waiting tenant)

  Output: flows made eligible
]]
--- @include "governance"

local ctx = newContext(ARGV[1], 0)
local n = 0
for _, ds in ipairs(split(ARGV[2], ',')) do
  local tenants
  if ARGV[3] ~= '' then tenants = { ARGV[3] } else tenants = rcall('HKEYS', dsKey(ctx, ds, 'wc')) end
  for _, tenant in ipairs(tenants) do n = n + wakeTenant(ctx, ds, tenant, false) end
end
return n
