/**
 * Where is an ingress job now, and why: combines the gate's decision record with the live state of
 * the BullMQ job in the place the decision sent it. Used by `GET /api/v1/jobs/:id`.
 */
import type { Governance } from '../redis/governance';
import { recentRate } from '../governance/allocation';
import { execJobId } from '../redis/keys';
import type { Topology } from './topology';

export type Place = 'ingress' | 'waiting' | 'exec' | 'dead-letter';

export interface JobLocation {
  id: string;
  place: Place;
  /**
   * BullMQ state in that place; `removed` when the job finished there and was removed; `claimed` in
   * ingress while a gate decides it.
   */
  state: string;
  queue: string;
  jobId: string;
  tenantId?: string;
  downstream?: string;
  decision?: {
    outcome: 'admitted' | 'dead-lettered';
    at: string;
    reason?: string;
    code?: string;
    message?: string;
  };
  /** Set once the observer saw the execution job end. */
  finished?: { outcome: 'completed' | 'failed' | 'vanished'; at: string };
  /** Set while the job is in the waiting place: what holds it, until when, its place in line, an estimate. */
  waiting?: {
    since: string;
    reason: string;
    until?: string;
    /** 1-based position in its tenant's waiting order on the downstream. */
    position?: number;
    /** Estimated admission time, from the hold's end and the tenant's recent admission rate; absent if unknown. */
    estimatedAdmissionAt?: string;
  };
}

/**
 * The ingress job's BullMQ state, or `claimed` while a gate holds it in a claimed batch (then it is in
 * none of BullMQ's states, only in the claims set).
 */
async function ingressStateOf(topology: Topology, governance: Governance, id: string): Promise<string> {
  const state = await topology.ingress.getJobState(id);
  if (state !== 'unknown') return state;
  return (await governance.isClaimed(topology.ingress.name, id)) ? 'claimed' : state;
}

const iso = (ms: string | undefined) => new Date(Number(ms ?? 0)).toISOString();

/**
 * Where the job with ingress id `id` is. An id reused by later jobs (a custom id added again) has a
 * record per job: `tenantId` (a tenant token) picks that tenant's latest, else the latest of all.
 */
export async function locateJob(topology: Topology, governance: Governance, id: string, opts: { tenantId?: string } = {}): Promise<JobLocation | undefined> {
  const [instances, ingressState] = await Promise.all([governance.reads.findInstances(id), ingressStateOf(topology, governance, id)]);
  const mine = opts.tenantId === undefined ? instances : instances.filter((r) => r.record.t === opts.tenantId);
  const chosen = mine.reduce<(typeof mine)[number] | undefined>((best, r) => (!best || Number(r.record.ts ?? 0) >= Number(best.record.ts ?? 0) ? r : best), undefined);
  const undecided = (): JobLocation => ({ id, place: 'ingress', state: ingressState, queue: topology.ingress.name, jobId: id });
  if (!chosen) return ingressState === 'unknown' || instances.length > 0 ? undefined : undecided();
  const { key, record } = chosen;

  const base = {
    id,
    ...(record.t ? { tenantId: record.t } : {}),
    ...(record.ds ? { downstream: record.ds } : {}),
  };
  if (record.st === 'dead') {
    const jobId = execJobId(key);
    const state = await topology.deadLetter.getJobState(jobId);
    // Decided but the dead-letter add has not happened yet (the gate is mid-step or died there).
    if (state === 'unknown' && ingressState !== 'unknown') return { ...undecided(), ...base };
    return {
      ...base,
      place: 'dead-letter',
      state: state === 'unknown' ? 'removed' : state,
      queue: topology.deadLetter.name,
      jobId,
      decision: { outcome: 'dead-lettered', at: iso(record.at), reason: record.reason, code: record.code, message: record.msg },
    };
  }

  const downstream = record.ds!;
  if (record.st === 'waiting') {
    const [flow, position, samples, breaker] = await Promise.all([
      governance.waiting.flowState(downstream, record.t!, record.n!),
      governance.waiting.position(downstream, record.t!, record.n!, key),
      governance.waiting.waitSamples(downstream, record.t!),
      governance.breakers.gate(downstream),
    ]);
    // An eligible flow waits for its turn or for capacity of the downstream, unless its breaker holds it.
    const reason = breaker === 'open' ? 'breaker-open' : breaker === 'half-open' && flow?.state === 'eligible' ? 'breaker-half-open' : (flow?.reason ?? 'capacity');
    // From when its hold ends (or now), at the rate the tenant's jobs have recently left the waiting place.
    const now = Date.now();
    const perMs = recentRate(samples, now);
    const start = flow?.until ?? now;
    const eta =
      position === undefined ? undefined : perMs !== undefined ? start + (position - 1) / perMs : position === 1 && flow?.until !== undefined ? start : undefined;
    return {
      ...base,
      place: 'waiting',
      state: flow?.state ?? 'eligible',
      queue: record.q ?? '',
      jobId: key,
      waiting: {
        since: iso(record.enq),
        reason,
        ...(flow?.until !== undefined ? { until: new Date(flow.until).toISOString() } : {}),
        ...(position !== undefined ? { position } : {}),
        ...(eta !== undefined ? { estimatedAdmissionAt: new Date(eta).toISOString() } : {}),
      },
    };
  }
  const queue = topology.exec.get(downstream);
  const jobId = execJobId(key);
  const state = queue ? await queue.getJobState(jobId) : 'unknown';
  const loc: JobLocation = {
    ...base,
    place: 'exec',
    state: state === 'unknown' ? 'removed' : state,
    queue: record.q ?? queue?.name ?? '',
    jobId,
    decision: { outcome: 'admitted', at: iso(record.at) },
  };
  if (record.st === 'completed' || record.st === 'failed' || record.st === 'vanished') {
    loc.finished = { outcome: record.st, at: iso(record.fin) };
  } else if (state === 'unknown' && ingressState !== 'unknown') {
    // Admitted, but the execution job is not added yet: the job is still the gate's.
    return { ...undecided(), ...base, decision: loc.decision! };
  }
  return loc;
}
