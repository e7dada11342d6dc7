/**
 * The governance gate's intake: consumes `ingress`, classifies each job (validate, route), and asks
 * Redis for a decision: admit now (then promote to `exec.<downstream>` with the same name, data and
 * retry options), wait (the job moves to its downstream's waiting place, drained by the Scheduler),
 * or refuse (dead-letter with a reason).
 *
 * Crash safety (kill -9 at any instruction): the decision is recorded in Redis before anything is
 * added, every add is idempotent (job id and deduplication key derived from the job key: the ingress
 * id, told apart from an earlier job with the same id by its creation stamp), and the ingress job
 * completes only after its add or its move to the waiting place. A gate that dies anywhere leaves its
 * ingress job active; BullMQ's stalled check returns it to `wait`, and the next attempt finds the
 * record (admitted: add again, a no-op if it happened; finished; already waiting; refused).
 *
 * No single job can stall intake or keep a slot: a job BullMQ refuses downstream, or whose add fails
 * for a reason of its own on every attempt, gives its admission back and is dead-lettered
 * (`exec-refused`); only outages (Redis unreachable or refusing writes) pause intake.
 */
import { DelayedError, Worker, type Job, type JobsOptions, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/file';
import { ERRORS } from '../errors';
import { createClassifier, type Classification } from '../core/classify';
import { MicroBatcher } from '../core/batcher';
import type { Failpoints } from '../failpoints';
import type { MirrorGuard } from '../governance/mirror-guard';
import type { Metrics } from '../observability/metrics';
import { encodePayload } from '../redis/codec';
import type { Delivery, Governance, IntakeItem, IntakeVerdict, WaitItem } from '../redis/governance';
import { execJobId, jobKey } from '../redis/keys';
import { addDeadLetter, type DeadLetterData } from './dead-letter';
import { bullmqRefusal, EXEC_ADD_ATTEMPTS, isJobFailure } from './exec-add';
import { execOptions } from './exec-options';
import type { Scheduler } from './scheduler';
import type { Topology } from './topology';

export type { DeadLetterData };

export interface GateDeps {
  config: Config;
  topology: Topology;
  governance: Governance;
  scheduler: Scheduler;
  /** Connection for the ingress Worker (BullMQ duplicates it for its blocking reads). */
  workerConnection: Redis;
  log: Logger;
  metrics: Metrics;
  failpoints: Failpoints;
  /** The governance clock (deadlines are checked against it). */
  now: () => number;
  /** Holds intake while Redis lacks the definitions Postgres has (absent: never held). */
  mirror?: Pick<MirrorGuard, 'known' | 'repair'>;
}

const INFRA_BACKOFF_MS = [50, 100, 250, 500, 1000, 2000];

export class Gate {
  private worker?: Worker;
  private readonly classify: (job: Pick<Job, 'name' | 'data' | 'opts'>) => Classification;
  private readonly intake: MicroBatcher<IntakeItem, IntakeVerdict>;
  private readonly enqueue: MicroBatcher<WaitItem, 'S' | 'E' | 'B'>;
  private readonly retentionMs: number;
  private consecutiveErrors = 0;

  constructor(private readonly deps: GateDeps) {
    const { config, governance, topology } = deps;
    this.retentionMs = config.retention.decisionSeconds * 1000;
    this.classify = createClassifier({
      tenantIdPath: config.tenant.idPath,
      maxPayloadBytes: config.limits.maxPayloadBytes,
      routing: { rules: config.routing.rules, dataField: config.routing.dataField, downstreams: [...topology.downstreams.keys()] },
      jobs: config.jobs,
    });
    const ds = (name: string) => topology.downstreams.get(name)!;
    this.intake = new MicroBatcher(async (d, items) => {
      const taken = await this.taken(
        items.map((it) => it.ingressJobId),
        topology.execQueue(d),
      );
      return governance.intake(d, ds(d).queue, ds(d).capacity, items.map((it, i) => ({ ...it, taken: taken[i]! })), deps.mirror?.known() ?? -1);
    }, config.gate.maxBatch);
    this.enqueue = new MicroBatcher(async (d, items) => {
      const { codes, shed } = await governance.enqueue(d, ds(d).queue, items, {
        backlog: config.tenantLimits,
        ...(ds(d).shedding ? { shedding: ds(d).shedding } : {}),
        leaseMs: config.scheduler.leaseMs,
      });
      // Jobs shed to make room may have waited for a while: their dead-letter adds are leased too.
      if (shed.length > 0) await deps.scheduler.deadLetter(d, shed.map((j) => ({ ...j, code: 'TG_ERR_SHED' as const })));
      return codes;
    }, config.gate.maxBatch);
  }

  start(): void {
    const { config, topology, workerConnection, log } = this.deps;
    this.worker = new Worker(config.queues.ingress, (job, token) => this.handle(job, token), {
      connection: workerConnection,
      prefix: topology.prefix,
      name: 'tollgate-gate',
      concurrency: config.gate.concurrency,
      lockDuration: config.gate.lockDurationMs,
      stalledInterval: config.gate.stalledIntervalMs,
      maxStalledCount: config.gate.maxStalledCount,
      removeOnComplete: { count: 0 },
    });
    this.worker.on('error', (err) => log.error({ err }, 'gate worker error'));
    log.info({ queue: config.queues.ingress, concurrency: config.gate.concurrency }, 'gate consuming ingress');
  }

  /** Stops taking jobs and waits for in-flight decisions and promotions to finish. */
  async close(): Promise<void> {
    await this.worker?.close();
  }

  private async handle(job: Job, token: string | undefined): Promise<void> {
    const started = performance.now();
    // The producer's options are meant for the execution job (they pass through); the ingress copy
    // has done its work once handled, so it is always removed on completion.
    const producerOpts = { ...job.opts };
    job.opts.removeOnComplete = true;
    const original = { name: job.name, data: job.data, opts: producerOpts as Record<string, unknown> };
    const delivery: Delivery = { ingressJobId: job.id!, stamp: String(job.timestamp) };
    try {
      const verdict = this.classify(job);
      if (!verdict.ok) {
        const [taken] = await this.taken([job.id!]);
        const [rec] = await this.deps.governance.deadLetter(undefined, [
          { ...delivery, taken: taken!, reason: verdict.reason, code: verdict.code, message: verdict.message, tenantId: verdict.tenantId },
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
        return;
      }
      const { downstream, tenantId } = verdict;
      if (verdict.deadline !== undefined && verdict.deadline <= this.deps.now()) {
        await this.refuse(job, delivery, original, downstream, tenantId, 'TG_ERR_EXPIRED', `its deadline ${new Date(verdict.deadline).toISOString()} had passed when it reached the gate; not run late`);
        return;
      }
      const decision = await this.intake.submit(downstream, { ...delivery, tenantId, name: job.name, cost: verdict.cost });
      this.deps.metrics.decisionSeconds.observe({ downstream }, (performance.now() - started) / 1000);
      await this.deps.failpoints.hit('gate.after-decision');
      switch (decision.kind) {
        case 'admitted':
          await this.promote(job, token, downstream, decision.key, producerOpts, original);
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
          if (stored === 'B') {
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
        case 'refused':
          await addDeadLetter(this.deps.topology, { key: decision.key, ingressJobId: job.id!, code: decision.code, message: decision.message, tenantId, downstream, job: original });
          break;
        case 'unmirrored':
          // Redis lost the definitions: restore them, and let the job come back in a moment.
          this.deps.mirror?.repair();
          await this.worker?.rateLimit(100);
          throw Worker.RateLimitError();
        default: // 'queued', 'finished': an earlier attempt did the work
      }
      this.consecutiveErrors = 0;
    } catch (err) {
      if (err instanceof Error && (err.name === 'RateLimitError' || err instanceof DelayedError)) throw err;
      await this.onInfraError(job, err);
    }
  }

  /**
   * Adds an admitted job to its execution queue. An add that cannot succeed for this job's own sake
   * (BullMQ refuses its options; a failure of its own, EXEC_ADD_ATTEMPTS times) gives the admission
   * back and dead-letters the job (`exec-refused`); an outage throws, and the job returns to ingress.
   */
  private async promote(job: Job, token: string | undefined, downstream: string, key: string, producerOpts: JobsOptions, original: DeadLetterData['job']): Promise<void> {
    const queue = this.deps.topology.execQueue(downstream);
    const opts = execOptions(key, producerOpts, this.retentionMs);
    let failure = bullmqRefusal(queue, job.name, job.data, opts);
    const refused = failure !== undefined;
    if (!refused) {
      try {
        await queue.add(job.name, job.data, opts);
        await this.deps.failpoints.hit('gate.after-exec-add');
        return;
      } catch (err) {
        if (!isJobFailure(err)) throw err;
        failure = (err as Error).message;
      }
    }
    const message = `${queue.name} refused the job: ${failure}`;
    const [outcome] = await this.deps.governance.abandon(downstream, [{ key, code: 'TG_ERR_EXEC_REFUSED', message }], { attempts: refused ? 1 : EXEC_ADD_ATTEMPTS });
    this.deps.log.warn({ jobId: job.id, downstream, outcome, err: failure }, 'execution add failed for a reason of the job\'s own');
    if (outcome === 'given-up') {
      await addDeadLetter(this.deps.topology, { key, ingressJobId: job.id!, code: 'TG_ERR_EXEC_REFUSED', message, downstream, job: original });
      return;
    }
    if (outcome === 'retry') {
      // Back to ingress for a later attempt, without pausing intake for the other tenants.
      await job.moveToDelayed(Date.now() + 250, token);
      throw new DelayedError();
    }
    throw new Error(`job ${job.id} was admitted, then found not admitted when its add failed`);
  }

  /** For ids that may be reused (custom ids: BullMQ's own are numbers), whether their first key is taken. */
  private async taken(ids: readonly string[], execQueue?: Queue): Promise<boolean[]> {
    const { topology } = this.deps;
    const checks: Array<{ queue: Queue; jobId: string }> = [];
    const at: number[] = [];
    ids.forEach((id, i) => {
      if (/^\d+$/.test(id)) return;
      const jobId = execJobId(jobKey(id));
      at.push(i);
      checks.push({ queue: topology.deadLetter, jobId });
      if (execQueue) checks.push({ queue: execQueue, jobId });
    });
    const out = ids.map(() => false);
    if (checks.length === 0) return out;
    const exists = await topology.jobsExist(checks);
    const per = execQueue ? 2 : 1;
    at.forEach((i, k) => (out[i] = exists.slice(k * per, (k + 1) * per).some(Boolean)));
    return out;
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
    const [taken] = await this.taken([job.id!], this.deps.topology.execQueue(downstream));
    const [rec] = await this.deps.governance.deadLetter(downstream, [{ ...delivery, taken: taken!, reason: ERRORS[code].reason, code, message, tenantId }]);
    await addDeadLetter(this.deps.topology, { key: rec!.key, ingressJobId: job.id!, code, message, tenantId, downstream, job: original });
  }

  /**
   * Redis or script errors: the job goes back to `wait` untouched (no attempt consumed) and this
   * worker pauses briefly, so nothing is lost and a sick Redis is not hammered.
   */
  private async onInfraError(job: Job, err: unknown): Promise<never> {
    const delay = INFRA_BACKOFF_MS[Math.min(this.consecutiveErrors, INFRA_BACKOFF_MS.length - 1)]!;
    this.consecutiveErrors++;
    this.deps.metrics.gateErrors.inc({ stage: 'intake' });
    this.deps.log.warn({ err, jobId: job.id, retryInMs: delay }, 'gate could not decide or promote a job; it returns to ingress');
    await this.worker?.rateLimit(delay);
    throw Worker.RateLimitError();
  }
}
