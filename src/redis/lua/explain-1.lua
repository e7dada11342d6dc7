--[[
  Dry run of the admission decision for one job: which quota governs it and whether it could start
  now, without taking anything. Used by the API to explain a waiting job, and by the differential
  test against src/core/quota.ts.

  Input:
    KEYS[1] any key of the governance slot
    ARGV[1..12]  governance context (see intake)
    ARGV[13] downstream   ARGV[14] tenant id   ARGV[15] job name   ARGV[16] cost

  Output: { kind ('admit' | 'wait' | 'reject'), quota id, reason or message, until (ms) or '', tat after admission or '' }
]]
--- @include "base"
--- @include "quota"
--- @include "evaluate"

local ctx = contextFromArgs()
local v = evaluate(ctx, ARGV[14], ARGV[15], ARGV[13], tonumber(ARGV[16]))
local q = v.q or resolveQuota(ctx, ARGV[14], ARGV[15], ARGV[13])
if v.k == 'admit' then return { 'admit', q.id, '', '', fmt(v.tat) } end
if v.k == 'wait' then return { 'wait', q.id, v.r, v.u and fmt(v.u) or '', '' } end
return { 'reject', q.id, v.msg, '', '' }
