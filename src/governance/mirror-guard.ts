/**
 * Keeps a gate from admitting under quotas and throttles Redis lost (a flushed or replaced Redis):
 * the gate learns the definitions version Postgres is at (polled), passes it to every intake call,
 * and the intake script decides nothing ('U') while Redis has no mirror of the definitions or one
 * behind that version. On 'U' the gate rebuilds the mirror from Postgres itself (as the observer's
 * sync would, a round later) and its jobs go back to ingress for a moment: nothing is lost, nothing
 * admitted blind.
 *
 * The mirror's version key is written on every rebuild, even at version 0 (a fresh install), so its
 * absence means Redis lost it. With an empty Redis and Postgres unreachable, the gate cannot know the
 * quotas: intake holds (jobs stay in ingress) until Postgres answers. With Redis intact, a Postgres
 * outage does not hold anything.
 */
import type { Logger } from 'pino';
import type { Database } from '../db/client';
import { currentVersion } from '../db/quotas';
import type { Definitions } from './definitions';

export class MirrorGuard {
  private version = 0;
  private timer?: NodeJS.Timeout;
  private repairing?: Promise<void>;
  private lastLog = 0;

  constructor(
    private readonly database: Database,
    private readonly definitions: Definitions,
    private readonly log: Logger,
    /** True once migrations are in (before that there is no table to read). */
    private readonly ready: () => boolean,
    private readonly intervalMs = 2000,
  ) {}

  /** The definitions version Postgres was last seen at. */
  known(): number {
    return this.version;
  }

  start(): void {
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.intervalMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async refresh(): Promise<void> {
    if (!this.ready()) return;
    try {
      this.version = Math.max(this.version, await currentVersion(this.database.db));
    } catch {
      // Postgres away: keep the last version known.
    }
  }

  /** Redis's mirror is missing or behind: rebuild it from Postgres (one attempt at a time). */
  repair(held = true): void {
    if (held && Date.now() - this.lastLog > 5000) {
      this.lastLog = Date.now();
      this.log.warn({ knownVersion: this.version }, 'Redis lacks the quota and throttle definitions Postgres has; intake waits while they are restored');
    }
    if (this.repairing || !this.ready()) return;
    // A moment's grace first: an API change in flight mirrors itself right after its Postgres commit.
    this.repairing = new Promise((r) => setTimeout(r, 200))
      .then(() => this.definitions.repairMirror())
      .then(() => undefined)
      .catch((err: Error) => this.log.warn({ err: err.message }, 'could not restore the definitions mirror yet; retrying'))
      .finally(() => {
        this.repairing = undefined;
      });
  }
}
