/**
 * The governance gate: consumes `ingress`, classifies each job (validate, route), decides, and
 * promotes admitted jobs to `exec.<downstream>` with the same name, data and retry options, or
 * dead-letters refused ones with a reason.
 *
 * Crash safety (kill -9 at any instruction): the decision is recorded in Redis before the execution
 * job is added, the add is idempotent (job id and deduplication key derived from the ingress id), and
 * the ingress job completes only after the add. A gate that dies anywhere leaves its ingress job
 * active; BullMQ's stalled check returns it to `wait`, and the next attempt finds the decision
 * ('R': add again, a no-op if it happened; 'F': it already finished, skip).
 */
import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/file';
import { createClassifier, type Classification } from '../core/classify';
import { MicroBatcher } from '../core/batcher';
import type { Failpoints } from '../failpoints';
import type { Metrics } from '../observability/metrics';
import type { AdmitCode, AdmitItem, Governance } from '../redis/governance';
import { execJobId } from '../redis/keys';
import { execOptions } from './exec-options';
import type { Topology } from './topology';

export interface GateDeps {
  config: Config;
  topology: Topology;
  governance: Governance;
  /** Connection for the ingress Worker (BullMQ duplicates it for its blocking reads). */
  workerConnection: Redis;
  log: Logger;
  metrics: Metrics;
  failpoints: Failpoints;
}

/** Envelope of a dead-lettered job: why, and the original job as the producer sent it. */
export interface DeadLetterData {
  reason: string;
  code: string;
  message: string;
  ingressJobId: string;
  tenantId?: string;
  downstream?: string;
  rejectedAt: string;
  job: { name: string; data: unknown; opts: Record<string, unknown> };
}

const INFRA_BACKOFF_MS = [50, 100, 250, 500, 1000, 2000];

export class Gate {
  private worker?: Worker;
  private readonly classify: (job: Pick<Job, 'name' | 'data' | 'opts'>) => Classification;
  private readonly admissions: MicroBatcher<AdmitItem, AdmitCode>;
  private readonly retentionMs: number;
  private consecutiveErrors = 0;

  constructor(private readonly deps: GateDeps) {
    const { config, governance, topology } = deps;
    this.retentionMs = config.retention.decisionSeconds * 1000;
    this.classify = createClassifier({
      tenantIdPath: config.tenant.idPath,
      maxPayloadBytes: config.limits.maxPayloadBytes,
      routing: { rules: config.routing.rules, dataField: config.routing.dataField, downstreams: [...topology.downstreams.keys()] },
    });
    this.admissions = new MicroBatcher(
      (downstream, items) => governance.admit(downstream, topology.downstreams.get(downstream)!.queue, items),
      config.gate.maxBatch,
    );
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
    try {
      const verdict = this.classify(job);
      if (!verdict.ok) {
        await this.deadLetter(job, producerOpts, verdict);
        return;
      }
      const code = await this.admissions.submit(verdict.downstream, {
        ingressJobId: job.id!,
        tenantId: verdict.tenantId,
        name: job.name,
      });
      await this.deps.failpoints.hit('gate.after-decision');
      if (code !== 'F') {
        await this.deps.topology
          .execQueue(verdict.downstream)
          .add(job.name, job.data, execOptions(job.id!, producerOpts, this.retentionMs));
        await this.deps.failpoints.hit('gate.after-exec-add');
      }
      const m = this.deps.metrics;
      m.promotionSeconds.observe({ downstream: verdict.downstream }, (performance.now() - started) / 1000);
      m.ingressToExecSeconds.observe({ downstream: verdict.downstream }, Math.max(0, Date.now() - job.timestamp) / 1000);
      this.consecutiveErrors = 0;
    } catch (err) {
      await this.onInfraError(job, token, err);
    }
  }

  private async deadLetter(
    job: Job,
    producerOpts: Job['opts'],
    verdict: Extract<Classification, { ok: false }>,
  ): Promise<void> {
    const ingressJobId = job.id!;
    await this.deps.governance.deadLetter(undefined, [
      { ingressJobId, reason: verdict.reason, code: verdict.code, message: verdict.message, tenantId: verdict.tenantId },
    ]);
    const data: DeadLetterData = {
      reason: verdict.reason,
      code: verdict.code,
      message: verdict.message,
      ingressJobId,
      rejectedAt: new Date().toISOString(),
      job: { name: job.name, data: job.data, opts: producerOpts as Record<string, unknown> },
    };
    if (verdict.tenantId !== undefined) data.tenantId = verdict.tenantId;
    // Dead-letter jobs are kept until ops remove them, so the job id alone makes the add idempotent.
    await this.deps.topology.deadLetter.add(job.name, data, { jobId: execJobId(ingressJobId) });
    await this.deps.failpoints.hit('gate.after-dead-letter');
    this.deps.log.debug({ jobId: ingressJobId, reason: verdict.reason }, 'dead-lettered');
  }

  /**
   * Redis or script errors: the job goes back to `wait` untouched (no attempt consumed) and this
   * worker pauses briefly, so nothing is lost and a sick Redis is not hammered.
   */
  private async onInfraError(job: Job, token: string | undefined, err: unknown): Promise<never> {
    const delay = INFRA_BACKOFF_MS[Math.min(this.consecutiveErrors, INFRA_BACKOFF_MS.length - 1)]!;
    this.consecutiveErrors++;
    this.deps.metrics.gateErrors.inc({ stage: 'promote' });
    this.deps.log.warn({ err, jobId: job.id, retryInMs: delay }, 'gate could not decide or promote a job; it returns to ingress');
    await this.worker?.rateLimit(delay);
    void token;
    throw Worker.RateLimitError();
  }
}
