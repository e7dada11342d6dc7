/**
 * Named failpoints for the fault suite (RELIABILITY.md): inert unless TOLLGATE_FAILPOINTS arms them.
 *
 *   TOLLGATE_FAILPOINTS=gate.after-exec-add=kill          kill -9 itself at the first hit
 *   TOLLGATE_FAILPOINTS=gate.after-exec-add=kill@25       at the 25th hit
 *   TOLLGATE_FAILPOINTS=gate.after-decision=kill%2        at each hit with probability 2 %
 *   TOLLGATE_FAILPOINTS=observer.after-release=delay:500  sleep 500 ms at each hit
 *
 * Several entries are separated by commas. An unknown name or action stops the process at start.
 */
export const FAILPOINTS = [
  'gate.after-claim',
  'gate.after-decision',
  'gate.after-exec-add',
  'gate.after-dead-letter',
  'gate.after-enqueue',
  'gate.before-finish',
  'scheduler.after-admit',
  'scheduler.after-exec-add',
  'observer.after-release',
  'observer.before-ack',
] as const;

export type FailpointName = (typeof FAILPOINTS)[number];

type Action = { kind: 'kill'; at: number } | { kind: 'kill-chance'; p: number } | { kind: 'delay'; ms: number };

export interface Failpoints {
  /** Fires the failpoint if armed; a no-op costing one Map lookup otherwise. */
  hit(name: FailpointName): Promise<void> | void;
  readonly armed: boolean;
}

function parseAction(text: string, entry: string): Action {
  let m: RegExpExecArray | null;
  if (text === 'kill') return { kind: 'kill', at: 1 };
  if ((m = /^kill@(\d+)$/.exec(text))) return { kind: 'kill', at: Number(m[1]) };
  if ((m = /^kill%(\d+(?:\.\d+)?)$/.exec(text))) return { kind: 'kill-chance', p: Number(m[1]) / 100 };
  if ((m = /^delay:(\d+)$/.exec(text))) return { kind: 'delay', ms: Number(m[1]) };
  throw new Error(`TOLLGATE_FAILPOINTS: "${entry}" has an unknown action "${text}" (kill, kill@N, kill%P, delay:MS)`);
}

export function parseFailpoints(spec: string | undefined, random: () => number = Math.random): Failpoints {
  const actions = new Map<string, Action>();
  for (const raw of (spec ?? '').split(',')) {
    const entry = raw.trim();
    if (!entry) continue;
    const eq = entry.indexOf('=');
    const name = eq < 0 ? entry : entry.slice(0, eq);
    if (!(FAILPOINTS as readonly string[]).includes(name)) {
      throw new Error(`TOLLGATE_FAILPOINTS: unknown failpoint "${name}" (known: ${FAILPOINTS.join(', ')})`);
    }
    actions.set(name, parseAction(eq < 0 ? 'kill' : entry.slice(eq + 1), entry));
  }
  const hits = new Map<string, number>();
  const die = () => process.kill(process.pid, 'SIGKILL');
  return {
    armed: actions.size > 0,
    hit(name) {
      if (actions.size === 0) return;
      const a = actions.get(name);
      if (!a) return;
      const n = (hits.get(name) ?? 0) + 1;
      hits.set(name, n);
      if (a.kind === 'kill' && n === a.at) die();
      else if (a.kind === 'kill-chance' && random() < a.p) die();
      else if (a.kind === 'delay') return new Promise((r) => setTimeout(r, a.ms));
    },
  };
}
