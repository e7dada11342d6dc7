/**
 * The governance gate's intake: claims batches of `ingress` jobs straight from BullMQ's keys
 * (src/queues/ingress.ts), classifies each job (validate, route), and asks Redis for a decision: admit
 * now (then promote to `exec.<downstream>` with the same name, data and retry options), wait (the job
 * moves to its downstream's waiting place, drained by the Scheduler), or refuse (dead-letter with a
 * reason). Decisions, waits and adds of a batch share script calls and pipelines (MicroBatcher, ioredis
 * auto-pipelining); the batch's handled jobs end in one call. Intake costs Redis less per job than a
 * producer's add, so a producer at full speed cannot build a backlog in ingress in front of the fair
 * waiting place.
 *
 * Crash safety (kill -9 at any instruction): the decision is recorded in Redis before anything is
 * added, every add is idempotent (job id and deduplication key derived from the job key: the ingress
 * id, told apart from an earlier job with the same id by its creation stamp), and the ingress job
 * is ended only after its add or its move to the waiting place. A gate that dies anywhere leaves its
 * claims to expire (`gate.lockDurationMs`); the next claim call of any gate takes them back, and the
 * next attempt finds the record (admitted: add again, a no-op if it happened; finished; already
 * waiting; refused).
 *
 * No single job can stall intake or keep a slot: a job BullMQ refuses downstream, or whose add fails
 * for a reason of its own on every attempt, gives its admission back and is dead-lettered
 * (`exec-refused`); only outages (Redis unreachable or refusing writes) pause intake.
 */
import type { Attributes } from '@opentelemetry/api';
import type { Job, JobsOptions } from 'bullmq';
import { Tracing, withTraceContext } from '../observability/tracing';
import { endHoldsOfEnded } from './dedup-holds';
import type { Logger } from 'pino';
import type { Config } from '../config/file';
import { ERRORS } from '../errors';
import { createClassifier, type Classification, type IngressJobView } from '../core/classify';
import { MicroBatcher } from '../core/batcher';
import type { Failpoints } from '../failpoints';
import type { MirrorGuard } from '../governance/mirror-guard';
import type { Metrics } from '../observability/metrics';
import { encodePayload } from '../redis/codec';
import type { Delivery, Governance, IntakeItem } from '../redis/governance';
import type { IntakeVerdict, StoreOutcome } from '../redis/replies';
import type { WaitItem } from '../redis/waiting-place';
import { addDeadLetter, type DeadLetterData } from './dead-letter';
import { addExecJobs, bullmqRefusal, EXEC_ADD_ATTEMPTS, isJobFailure, type ExecJob } from './exec-add';
import { execOptions } from './exec-options';
import type { Ingress } from './ingress';
import type { Scheduler } from './scheduler';
import type { Topology } from './topology';

export type { DeadLetterData };

export interface GateDeps {
  config: Config;
  topology: Topology;
  governance: Governance;
  scheduler: Scheduler;
  /** The gate's side of the ingress queue (claims, ends, the wait for work). */
  ingress: Ingress;
  log: Logger;
  metrics: Metrics;
  failpoints: Failpoints;
  /** The governance clock (deadlines are checked against it). */
  now: () => number;
  /** Holds intake while Redis lacks the definitions Postgres has (absent: never held). */
  mirror?: Pick<MirrorGuard, 'known' | 'repair'>;
}

const INFRA_BACKOFF_MS = [50, 100, 250, 500, 1000, 2000];

/**
 * What became of one claimed job: handled (end it), or to be claimed again later. done: the job went where it goes; `holdKey` (its job key) when it is in flight (admitted or waiting)
 * and its simple-mode deduplication id must hold until its execution ends.
 */
type Outcome = { kind: 'done'; holdKey?: string } | { kind: 'again'; inMs: number };
const DONE: Outcome = { kind: 'done' };

/** Raised to send one claimed job back for a later attempt (the claim is given back, not ended). */
class TryAgain extends Error {
  constructor(readonly inMs: number) {
    super(`try again in ${inMs} ms`);
  }
}

export class Gate {
  private running = false;
  private loops: Array<Promise<void>> = [];
  private idle?: Promise<void>;
  /** Downstreams whose last intake batch had jobs that must wait. */
  private readonly waitingOn = new Set<string>();
  private readonly classify: (job: IngressJobView) => Classification;
  private readonly tracing: Tracing;
  private readonly intake: MicroBatcher<IntakeItem, IntakeVerdict>;
  private readonly enqueue: MicroBatcher<WaitItem, StoreOutcome>;
  /** Execution adds of a tick, per downstream: one script call (addExecJobs); per job, its add's error. */
  private readonly execAdds: MicroBatcher<ExecJob, unknown>;
  private readonly retentionMs: number;
  private consecutiveErrors = 0;

  constructor(private readonly deps: GateDeps) {
    const { config, governance, topology } = deps;
    this.retentionMs = config.retention.decisionSeconds * 1000;
    this.tracing = new Tracing(config.telemetry);
    this.classify = createClassifier({
      tenantIdPath: config.tenant.idPath,
      maxPayloadBytes: config.limits.maxPayloadBytes, maxJobNameLength: config.limits.maxJobNameLength,
      routing: { rules: config.routing.rules, dataField: config.routing.dataField, downstreams: [...topology.downstreams.keys()] },
      jobs: config.jobs,
    });
    const ds = (name: string) => topology.downstreams.get(name)!;
    this.intake = new MicroBatcher(async (d, items) => {
      const taken = await topology.firstInstancesTaken(
        items.map((it) => it.ingressJobId),
        topology.execQueue(d),
      );
      const verdicts = await governance.intake(
        d,
        ds(d).queue,
        ds(d).capacity,
        items.map((it, i) => ({ ...it, taken: taken[i] })),
        deps.mirror?.known() ?? -1,
        config.tenantLimits,
      );
      // A downstream where jobs wait (a flood, capacity binding) gets payloads with its next batches,
      // so intake stores waiting jobs itself; one where nothing waited gets none (they would be unused).
      if (verdicts.some((v) => v.kind === 'wait' || v.kind === 'stored')) this.waitingOn.add(d);
      else this.waitingOn.delete(d);
      return verdicts;
    }, config.gate.maxBatch);
    this.enqueue = new MicroBatcher(async (d, items) => {
      const { outcomes, shed } = await governance.waiting.store(d, ds(d).queue, items, {
        backlog: config.tenantLimits,
        ...(ds(d).shedding ? { shedding: ds(d).shedding } : {}),
        leaseMs: config.scheduler.leaseMs,
      });
      // Jobs shed to make room may have waited for a while: their dead-letter adds are leased too.
      if (shed.length > 0) await deps.scheduler.deadLetter(d, shed.map((j) => ({ ...j, code: 'TG_ERR_SHED' as const })));
      return outcomes;
    }, config.gate.maxBatch);
    this.execAdds = new MicroBatcher((d, items) => addExecJobs(topology, topology.execQueue(d), items), config.gate.maxBatch);
  }

  /** Starts the claim loops: `gate.concurrency` jobs in flight at most, claimed `gate.maxBatch` at a time. */
  start(): void {
    const { config, log } = this.deps;
    this.running = true;
    const batch = Math.min(config.gate.maxBatch, config.gate.concurrency);
    const loops = Math.max(1, Math.ceil(config.gate.concurrency / batch));
    for (let i = 0; i < loops; i++) this.loops.push(this.loop(batch));
    log.info({ queue: config.queues.ingress, concurrency: config.gate.concurrency, batch, loops }, 'gate consuming ingress');
  }

  /** Stops claiming and waits for the batches in flight to be handled and ended. */
  async close(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.loops = [];
  }

  private async loop(batch: number): Promise<void> {
    const { config, ingress, failpoints, log } = this.deps;
    while (this.running) {
      try {
        const claim = await ingress.claim(batch, config.gate.lockDurationMs);
        if (claim.jobs.length === 0) {
          const wait = claim.nextDelayedAt !== undefined ? Math.max(1, claim.nextDelayedAt - Date.now()) : GATE_IDLE_WAIT_MS;
          await this.waitForWork(Math.min(wait, GATE_IDLE_WAIT_MS));
          continue;
        }
        await failpoints.hit('gate.after-claim');
        const outcomes = await Promise.all(claim.jobs.map((job) => this.handle(job, claim.dataBytes.get(job), claim.rawData.get(job))));
        await failpoints.hit('gate.before-finish');
        const done = claim.jobs.filter((_, i) => outcomes[i]!.kind === 'done');
        const holds = new Map<Job, string>();
        claim.jobs.forEach((j, i) => {
          const o = outcomes[i]!;
          if (o.kind === 'done' && o.holdKey !== undefined) holds.set(j, o.holdKey);
        });
        await ingress.finish(done, holds);
        // A job can end before its ingress job does (a quick worker): its hold, made by the finish, ends
        // here. Read after the hold exists, so this or the observer's release (which ends holds after it
        // released) always sees it.
        if (holds.size > 0) await endHoldsOfEnded(this.deps.topology, this.deps.governance, [...holds.values()]);
        // Jobs to try again go back to the claims with a new due time; the longest wait sets the pause.
        const again = claim.jobs.flatMap((j, i) => (outcomes[i]!.kind === 'again' ? [{ id: j.id!, inMs: (outcomes[i] as { inMs: number }).inMs }] : []));
        for (const inMs of new Set(again.map((a) => a.inMs))) {
          await ingress.release(again.filter((a) => a.inMs === inMs).map((a) => a.id), Date.now() + inMs);
        }
        if (this.consecutiveErrors > 0) await sleep(INFRA_BACKOFF_MS[Math.min(this.consecutiveErrors - 1, INFRA_BACKOFF_MS.length - 1)]!);
      } catch (err) {
        // Claiming or ending failed (Redis unreachable or refusing writes): the claims stay leased
        // and come back; pause with backoff so a sick Redis is not hammered.
        const delay = INFRA_BACKOFF_MS[Math.min(this.consecutiveErrors, INFRA_BACKOFF_MS.length - 1)]!;
        this.consecutiveErrors++;
        this.deps.metrics.gateErrors.inc({ stage: 'intake' });
        log.warn({ err: (err as Error).message, retryInMs: delay }, 'gate could not claim or end ingress jobs; retrying');
        await sleep(delay);
      }
    }
  }

  /** One wait on the ingress marker shared by every idle loop of this gate. */
  private waitForWork(ms: number): Promise<void> {
    if (!this.idle) {
      this.idle = this.deps.ingress
        .waitForWork(ms)
        .catch(() => sleep(Math.min(ms, 100)))
        .finally(() => (this.idle = undefined));
    }
    return this.idle;
  }

  /** One ingress job, in a span continuing its producer's trace when tracing is on. */
  private handle(job: Job, dataBytes?: number, rawData?: string): Promise<Outcome> {
    if (!this.tracing.enabled) return this.decideJob(job, dataBytes, rawData, undefined, () => undefined);
    return this.tracing.span('tollgate.gate', job.opts, { 'messaging.message.id': job.id!, 'tollgate.job_name': job.name.slice(0, this.deps.config.limits.maxJobNameLength) }, (metadata, annotate) =>
      this.decideJob(job, dataBytes, rawData, metadata, annotate),
    );
  }

  private async decideJob(job: Job, dataBytes: number | undefined, rawData: string | undefined, traceMetadata: string | undefined, annotate: (a: Attributes) => void): Promise<Outcome> {
    const started = performance.now();
    // The producer's options are meant for the execution job (they pass through); the ingress copy
    // has done its work once handled, so it is always removed on completion.
    const producerOpts: JobsOptions = { ...job.opts };
    // A flow's child: its execution job gets the same parent, and stands in for it there.
    if (job.parentKey) {
      const cut = job.parentKey.lastIndexOf(':');
      producerOpts.parent = { id: job.parent?.id ?? job.parentKey.slice(cut + 1), queue: job.parent?.queueKey ?? job.parentKey.slice(0, cut) };
    }
    job.opts.removeOnComplete = true;
    const original = { name: job.name, data: job.data, opts: producerOpts as Record<string, unknown> };
    const delivery: Delivery = { ingressJobId: job.id!, stamp: String(job.timestamp) };
    if (job.repeatJobKey) await this.deps.ingress.scheduleNext(job, this.deps.log);
    try {
      const verdict = this.classify({ name: job.name, data: job.data, opts: job.opts, timestamp: job.timestamp, delay: job.opts.delay, ...(dataBytes !== undefined ? { dataBytes } : {}) });
      if (!verdict.ok) {
        const [taken] = await this.deps.topology.firstInstancesTaken([job.id!]);
        const [rec] = await this.deps.governance.deadLetter(undefined, [
          { ...delivery, taken, reason: verdict.reason, code: verdict.code, message: verdict.message, tenantId: verdict.tenantId },
        ]);
        await addDeadLetter(this.deps.topology, {
          key: rec!.key,
          ingressJobId: job.id!,
          code: verdict.code,
          message: verdict.message,
          ...(verdict.tenantId !== undefined ? { tenantId: verdict.tenantId } : {}),
          job: original,
        });
        await this.deps.failpoints.hit('gate.after-dead-letter');
        return DONE;
      }
      const { downstream, tenantId } = verdict;
      annotate({ 'tollgate.downstream': downstream, 'tollgate.tenant': tenantId });
      if (verdict.deadline !== undefined && verdict.deadline <= this.deps.now()) {
        await this.refuse(job, delivery, original, downstream, tenantId, 'TG_ERR_EXPIRED', `its deadline ${new Date(verdict.deadline).toISOString()} had passed when it reached the gate; not run late`);
        return DONE;
      }
      // Where jobs wait, the job goes with its payload: intake stores it at once if it must wait (but not
      // where load shedding runs, whose set-aside logic lives in the enqueue call).
      const waiting =
        this.waitingOn.has(downstream) && !this.deps.topology.downstreams.get(downstream)!.shedding
          ? { priority: verdict.priority, payload: encodePayload({ name: job.name, data: job.data, opts: producerOpts, addedAt: job.timestamp }), ...(verdict.deadline !== undefined ? { deadline: verdict.deadline } : {}) }
          : undefined;
      const decision = await this.intake.submit(downstream, { ...delivery, tenantId, name: job.name, cost: verdict.cost, ...(waiting ? { waiting } : {}) });
      this.deps.metrics.decisionSeconds.observe({ downstream }, (performance.now() - started) / 1000);
      annotate({ 'tollgate.decision': decision.kind });
      await this.deps.failpoints.hit('gate.after-decision');
      // In flight once this step is done (unless it is dead-lettered below): a simple-mode deduplication
      // id then holds until the job's execution ends, as it would on a plain queue.
      let inFlight = true;
      switch (decision.kind) {
        case 'admitted':
          inFlight = await this.promote(job, rawData, downstream, decision.key, producerOpts, original, traceMetadata);
          this.deps.metrics.promotionSeconds.observe({ downstream }, (performance.now() - started) / 1000);
          this.deps.metrics.ingressToExecSeconds.observe({ downstream }, Math.max(0, Date.now() - job.timestamp) / 1000);
          break;
        case 'wait': {
          const payload = encodePayload({ name: job.name, data: job.data, opts: producerOpts, addedAt: job.timestamp });
          const stored = await this.enqueue.submit(downstream, {
            key: decision.key,
            stamp: delivery.stamp,
            tenantId,
            name: job.name,
            cost: verdict.cost,
            priority: verdict.priority,
            payload,
            ...(verdict.deadline !== undefined ? { deadline: verdict.deadline } : {}),
          });
          if (stored === 'backlog-full') {
            inFlight = false;
            await addDeadLetter(this.deps.topology, {
              key: decision.key,
              ingressJobId: job.id!,
              code: 'TG_ERR_BACKLOG_FULL',
              message: `tenant ${tenantId} already has ${this.deps.config.tenantLimits.maxWaiting} jobs waiting on ${downstream}`,
              tenantId,
              downstream,
              job: original,
            });
            break;
          }
          await this.deps.failpoints.hit('gate.after-enqueue');
          this.deps.scheduler.kick(downstream);
          break;
        }
        case 'stored':
          await this.deps.failpoints.hit('gate.after-enqueue');
          this.deps.scheduler.kick(downstream);
          break;
        case 'refused':
          inFlight = false;
          await addDeadLetter(this.deps.topology, { key: decision.key, ingressJobId: job.id!, code: decision.code, message: decision.message, tenantId, downstream, job: original });
          break;
        case 'unmirrored':
          // Redis lost the definitions: restore them, and let the job come back in a moment.
          this.deps.mirror?.repair();
          return { kind: 'again', inMs: 100 };
        case 'finished':
          inFlight = false;
          break;
        default: // 'queued': an earlier attempt stored it in the waiting place
      }
      this.consecutiveErrors = 0;
      return inFlight && job.deduplicationId ? { kind: 'done', holdKey: decision.key } : DONE;
    } catch (err) {
      if (err instanceof TryAgain) return { kind: 'again', inMs: err.inMs };
      return this.onInfraError(job, err);
    }
  }

  /**
   * Adds an admitted job to its execution queue: true once added. An add that cannot succeed for this
   * job's own sake (BullMQ refuses its options; a failure of its own, EXEC_ADD_ATTEMPTS times) gives the
   * admission back and dead-letters the job (`exec-refused`: false); an outage throws, and the job
   * returns to ingress.
   */
  private async promote(job: Job, rawData: string | undefined, downstream: string, key: string, producerOpts: JobsOptions, original: DeadLetterData['job'], traceMetadata?: string): Promise<boolean> {
    const queue = this.deps.topology.execQueue(downstream);
    const opts = withTraceContext(execOptions(key, producerOpts, this.retentionMs), traceMetadata);
    const err = await this.execAdds.submit(downstream, {
      name: job.name,
      data: job.data,
      ...(rawData !== undefined ? { rawData } : {}),
      opts,
      ingressJobId: job.id!,
      afterAdd: () => this.deps.failpoints.hit('gate.after-exec-add'),
    });
    if (err === undefined) return true;
    let failure: string;
    let refused = false;
    // BullMQ's own option check says whether it refuses this job (and would on every attempt).
    const refusal = bullmqRefusal(queue, job.name, job.data, opts);
    if (refusal !== undefined) [failure, refused] = [refusal, true];
    else if (isJobFailure(err)) failure = (err as Error).message;
    else throw err;
    const message = `${queue.name} refused the job: ${failure}`;
    const [outcome] = await this.deps.governance.abandon(downstream, [{ key, code: 'TG_ERR_EXEC_REFUSED', message }], { attempts: refused ? 1 : EXEC_ADD_ATTEMPTS });
    this.deps.log.warn({ jobId: job.id, downstream, outcome, err: failure }, 'execution add failed for a reason of the job\'s own');
    if (outcome === 'given-up') {
      await addDeadLetter(this.deps.topology, { key, ingressJobId: job.id!, code: 'TG_ERR_EXEC_REFUSED', message, downstream, job: original });
      return false;
    }
    // Claimed again in a moment, without pausing intake for the other tenants.
    if (outcome === 'retry') throw new TryAgain(250);
    throw new Error(`job ${job.id} was admitted, then found not admitted when its add failed`);
  }

  /** Records a refusal of a routed job and dead-letters it (both idempotent). */
  private async refuse(
    job: Job,
    delivery: Delivery,
    original: DeadLetterData['job'],
    downstream: string,
    tenantId: string,
    code: 'TG_ERR_EXPIRED',
    message: string,
  ): Promise<void> {
    const [taken] = await this.deps.topology.firstInstancesTaken([job.id!], this.deps.topology.execQueue(downstream));
    const [rec] = await this.deps.governance.deadLetter(downstream, [{ ...delivery, taken, reason: ERRORS[code].reason, code, message, tenantId }]);
    await addDeadLetter(this.deps.topology, { key: rec!.key, ingressJobId: job.id!, code, message, tenantId, downstream, job: original });
  }

  /**
   * Redis or script errors: the job is claimed again after a backoff, untouched, and this gate pauses
   * briefly after the batch, so nothing is lost and a sick Redis is not hammered.
   */
  private onInfraError(job: Job, err: unknown): Outcome {
    const delay = INFRA_BACKOFF_MS[Math.min(this.consecutiveErrors, INFRA_BACKOFF_MS.length - 1)]!;
    this.consecutiveErrors++;
    this.deps.metrics.gateErrors.inc({ stage: 'intake' });
    this.deps.log.warn({ err, jobId: job.id, retryInMs: delay }, 'gate could not decide or promote a job; it is claimed again later');
    return { kind: 'again', inMs: delay };
  }
}

/** Longest wait on the ingress marker before claiming again (covers a marker another gate took). */
const GATE_IDLE_WAIT_MS = 1000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
