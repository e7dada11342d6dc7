--[[
  Hands a flow's child over from its ingress job to its execution job: the parent's dependency on the
  ingress job (met by nothing: the ingress job ends when the gate has handled it) is removed once the
  execution job, added with the same parent, is the dependency in its place. If that execution job
  already finished (its worker was quicker than this call), the parent had waited only for the ingress
  job: it moves on now, as BullMQ moves a parent whose last child completed.

  Input:
    KEYS[1] the parent's dependencies (set)
    ARGV[1] the parent's key   ARGV[2] the parent's queue key   ARGV[3] the parent's id
    ARGV[4] the ingress job's key   ARGV[5] now (ms)
  Output: 1 if the ingress job was a dependency (removed now), 0 if not (an earlier call removed it)
]]
local rcall = redis.call
--- @include "bullmq:moveParentToWaitIfNoPendingDependencies"

if rcall('SREM', KEYS[1], ARGV[4]) == 0 then return 0 end
moveParentToWaitIfNoPendingDependencies(ARGV[2], KEYS[1], ARGV[1], ARGV[3], tonumber(ARGV[5]))
return 1
