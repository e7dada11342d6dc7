/**
 * The one adapter from the governance scripts' compact replies (single letters, flat arrays) to typed
 * results. Scripts answer in letters to keep replies small; nothing outside this module reads them.
 */
import { isRejectionCode, type RejectionCode } from '../errors';

/** What intake decided for one ingress job; `key` is its job key (src/redis/keys.ts, jobKey). */
export type IntakeVerdict =
  /** Admitted: add it to the execution queue. `again`: an earlier attempt admitted it (the add is idempotent). */
  | { kind: 'admitted'; key: string; again: boolean }
  /** Must wait: store it in the waiting place under its key. */
  | { kind: 'wait'; key: string }
  /** Stored in the waiting place by this call (it came with its payload). */
  | { kind: 'stored'; key: string }
  /** An earlier attempt did the work: it waits already, or it ran. */
  | { kind: 'queued' | 'finished'; key: string }
  /** Refused: dead-letter it. `again`: refused by an earlier attempt (its dead-letter job may be missing). */
  | { kind: 'refused'; key: string; code: RejectionCode; message: string; again: boolean }
  /** Redis's definitions mirror is behind the version given (it lost them): nothing is decided now. */
  | { kind: 'unmirrored' };

/** What storing a job in the waiting place did: stored now, known already (an earlier attempt), or refused (the tenant's backlog is full). */
export type StoreOutcome = 'stored' | 'known' | 'backlog-full';

/** What `abandon` did with an admitted job whose add failed: gave it up (dead-letter it), kept it for a retry, or found it not admitted. */
export type AbandonOutcome = 'given-up' | 'retry' | 'not-admitted';

// intake-1.lua, per job: code, job key, detail.
const INTAKE_CODES: Record<string, 'admitted' | 'wait' | 'stored' | 'queued' | 'finished'> = { A: 'admitted', R: 'admitted', W: 'wait', S: 'stored', Q: 'queued', F: 'finished' };

export function decodeIntake(raw: readonly string[]): IntakeVerdict[] {
  const out: IntakeVerdict[] = [];
  for (let i = 0; i < raw.length; i += 3) out.push(intakeVerdict(raw[i]!, raw[i + 1]!, raw[i + 2]!));
  return out;
}

function intakeVerdict(code: string, key: string, detail: string): IntakeVerdict {
  if (code === 'U') return { kind: 'unmirrored' };
  if (code === 'X' || code === 'D') {
    const bar = detail.indexOf('|');
    const errorCode = detail.slice(0, bar);
    if (!isRejectionCode(errorCode)) throw new Error(`intake refused job ${key} with an unknown code ${JSON.stringify(errorCode)}`);
    return { kind: 'refused', key, code: errorCode, message: detail.slice(bar + 1), again: code === 'D' };
  }
  const kind = INTAKE_CODES[code];
  if (kind === undefined) throw new Error(`intake answered ${JSON.stringify(code)} for job ${key}`);
  return kind === 'admitted' ? { kind, key, again: code === 'R' } : { kind, key };
}

// enqueue-1.lua: per job S | E | B, then '|', then per shed job: id, payload, message.
const STORE_CODES: Record<string, StoreOutcome> = { S: 'stored', E: 'known', B: 'backlog-full' };

export function decodeStore(raw: readonly string[]): { outcomes: StoreOutcome[]; shed: Array<{ id: string; payload: string; message: string }> } {
  const sep = raw.indexOf('|');
  const outcomes = raw.slice(0, sep).map((c) => {
    const o = STORE_CODES[c];
    if (o === undefined) throw new Error(`enqueue answered ${JSON.stringify(c)}`);
    return o;
  });
  const shed: Array<{ id: string; payload: string; message: string }> = [];
  for (let i = sep + 1; i < raw.length; i += 3) shed.push({ id: raw[i]!, payload: raw[i + 1]!, message: raw[i + 2]! });
  return { outcomes, shed };
}

export interface AdmitResult {
  /** When the scheduler should look again (a timer or lease falls due), if ever. */
  nextWake?: number;
  /** More work may be admissible right away. */
  more: boolean;
  admitted: Array<{ id: string; payload: string }>;
  refused: Array<{ id: string; payload: string; message: string; code: string }>;
}

// admitWaiting-1.lua: next wake (-1: none), more (0|1), per admitted job id and payload, '|', per refused job id, payload, message, code.
export function decodeAdmit(raw: ReadonlyArray<string | number>): AdmitResult {
  const nextWake = Number(raw[0]);
  const sep = raw.indexOf('|', 2);
  const admitted: AdmitResult['admitted'] = [];
  for (let i = 2; i < sep; i += 2) admitted.push({ id: String(raw[i]), payload: String(raw[i + 1]) });
  const refused: AdmitResult['refused'] = [];
  for (let i = sep + 1; i < raw.length; i += 4) refused.push({ id: String(raw[i]), payload: String(raw[i + 1]), message: String(raw[i + 2]), code: String(raw[i + 3]) });
  return { ...(nextWake >= 0 ? { nextWake } : {}), more: Number(raw[1]) === 1, admitted, refused };
}

// releaseHeld-1.lua: per taken job id and payload, '|', the number skipped.
export function decodeHeld(raw: ReadonlyArray<string | number>): { taken: Array<{ id: string; payload: string }>; skipped: number } {
  const sep = raw.indexOf('|');
  const taken: Array<{ id: string; payload: string }> = [];
  for (let i = 0; i < sep; i += 2) taken.push({ id: String(raw[i]), payload: String(raw[i + 1]) });
  return { taken, skipped: Number(raw[sep + 1] ?? 0) };
}

// release-1.lua: per job 1|0 (released by this call) and its breaker generation ('' = none), then the downstreams to wake (comma-separated).
export function decodeRelease(out: ReadonlyArray<number | string>): { released: boolean[]; generations: Array<number | undefined>; wake: string[] } {
  const wake = String(out[out.length - 1] ?? '');
  const released: boolean[] = [];
  const generations: Array<number | undefined> = [];
  for (let i = 0; i + 1 < out.length; i += 2) {
    released.push(out[i] === 1);
    generations.push(out[i + 1] === '' ? undefined : Number(out[i + 1]));
  }
  return { released, generations, wake: wake === '' ? [] : wake.split(',') };
}

// deadLetter-1.lua: per job N (recorded now) | E (an earlier attempt recorded it), then its job key.
export function decodeDeadLetter(raw: readonly string[]): Array<{ recorded: boolean; key: string }> {
  const out: Array<{ recorded: boolean; key: string }> = [];
  for (let i = 0; i < raw.length; i += 2) out.push({ recorded: raw[i] === 'N', key: raw[i + 1]! });
  return out;
}

// abandon-1.lua: per job G (given up) | T (try again) | N (not admitted), then the downstreams to wake.
export function decodeAbandon(raw: readonly string[]): { outcomes: AbandonOutcome[]; wake: string[] } {
  const wake = String(raw[raw.length - 1] ?? '');
  return {
    outcomes: raw.slice(0, -1).map((r) => (r === 'G' ? 'given-up' : r === 'T' ? 'retry' : 'not-admitted')),
    wake: wake === '' ? [] : wake.split(','),
  };
}
