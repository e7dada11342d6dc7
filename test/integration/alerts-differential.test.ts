/**
 * The alert crossing rule exists twice: `step` in src/core/alerts.ts (reference, unit-tested) and
 * src/redis/lua/evaluateAlerts-3.lua (what runs, atomically, in Redis). This test feeds both the same
 * random rounds of observations and clocks, and requires the same openings and resolutions in the same
 * order, the same stored state (open ids, sustain start times) after every round, and one stream entry
 * per event. It also races two connections on one crossing.
 */
import { fieldsOf } from '../../src/core/fields';
import { alertKey, step, type CrossingState } from '../../src/core/alerts';
import { Keys } from '../../src/redis/keys';
import { scriptsFor } from '../../src/redis/scripts';
import { cleanupPrefix, REDIS_URL, testRedis, uniquePrefix } from '../support/services';
import { rng } from '../support/rng';

const redis = testRedis();
const prefix = uniquePrefix('alertdiff');
const MAXLEN = 1000;

afterAll(async () => {
  await cleanupPrefix(redis, prefix);
  redis.disconnect();
});


type Mode = 'hot' | 'cool' | 'band';
interface Event {
  type: 'opened' | 'resolved';
  key: string;
  id: string;
}

/** [type, key, id, type, key, id, ...] → events. */
function triples(out: string[]): Event[] {
  expect(out.length % 3).toBe(0);
  const events: Event[] = [];
  for (let i = 0; i < out.length; i += 3) events.push({ type: out[i] as Event['type'], key: out[i + 1]!, id: out[i + 2]! });
  return events;
}

it('agrees with step on 300 random rounds over 5 keys (hysteresis, sustained conditions, a key observed twice in a round)', async () => {
  const k = new Keys(`${prefix}:r`);
  const KEYS: [string, string, string] = [k.alertsOpen(), k.alertsSince(), k.alertEvents()];
  const scripts = scriptsFor(redis);
  const rand = rng(20261202);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;

  const names = ['acme', 'globex', 'initech', 'umbrella', 'hooli'].map((t, i) => alertKey(i % 2 ? 'saturation' : 'backlog', t));
  const twin = new Map<string, CrossingState>(names.map((n) => [n, {}]));
  // Modes and sustain times are sticky per key, so hot streaks long enough for 500 ms happen.
  const mode = new Map<string, Mode>(names.map((n) => [n, 'band']));
  const sustain = new Map<string, number>(names.map((n) => [n, pick([0, 100, 500])]));
  const stream: Array<{ id?: string; t: Event['type']; k: string; a: string; p: string; at: string }> = [];
  let now = Date.UTC(2026, 11, 2, 12, 0, 0, 0);
  const seen = { opened: 0, resolved: 0, openedAfterSustain: 0, heldOpen: 0, waitingToSustain: 0, sustainReset: 0, twiceInRound: 0, openedAndResolvedInOneCall: 0, openedExactlyAtSustain: 0 };

  for (let round = 0; round < 300; round++) {
    // 0-300 ms, mostly in steps of 50, so openings land exactly on a sustain time too.
    now += rand() < 0.8 ? 50 * Math.floor(rand() * 7) : Math.floor(rand() * 301);
    const args: Array<string | number> = [now, MAXLEN];
    // What step says, in observation order; an opening's id is the one Redis gives it (filled in below).
    const expected: Array<{ type: Event['type']; key: string; id?: string; payload: string }> = [];
    const observe = (key: string, again: boolean) => {
      const before = mode.get(key)!;
      if (again) mode.set(key, before === 'hot' ? pick(['cool', 'cool', 'band'] as const) : before === 'cool' ? pick(['hot', 'hot', 'band'] as const) : pick(['hot', 'cool'] as const));
      else if (rand() < 0.3) mode.set(key, pick(['hot', 'cool', 'band'] as const));
      if (rand() < 0.05) sustain.set(key, pick([0, 100, 500]));
      const m = mode.get(key)!;
      const obs = { key, hot: m === 'hot', cool: m === 'cool', sustainMs: sustain.get(key)! };
      expect(obs.hot && obs.cool).toBe(false);
      const payload = JSON.stringify({ key, value: round, mode: m });
      args.push(key, obs.hot ? '1' : '0', obs.cool ? '1' : '0', obs.sustainMs, payload);

      const state = twin.get(key)!;
      const wasOpen = state.open !== undefined;
      const sinceBefore = state.since;
      const r = step(state, obs, now);
      if (r.kind === 'opened') {
        if (obs.sustainMs > 0) seen.openedAfterSustain++;
        if (obs.sustainMs > 0 && sinceBefore !== undefined && now - sinceBefore === obs.sustainMs) seen.openedExactlyAtSustain++;
        // A placeholder until Redis names the opening; a resolution later in this call carries it.
        state.open = `opening#${expected.length}`;
        expected.push({ type: 'opened', key, payload });
      } else if (r.kind === 'resolved') {
        expected.push({ type: 'resolved', key, id: r.id, payload });
      } else if (wasOpen) seen.heldOpen++;
      else if (obs.hot) seen.waitingToSustain++;
      else if (sinceBefore !== undefined) seen.sustainReset++;
    };
    // Most keys every round, in a random order; then sometimes one of them again, in another mode
    // (preferably one that just opened or resolved, to resolve or reopen it within the same call).
    const order = names.filter(() => rand() < 0.85).sort(() => rand() - 0.5);
    for (const key of order) observe(key, false);
    if (order.length > 0 && rand() < 0.4) {
      const changed = expected.map((e) => e.key);
      observe(pick(changed.length > 0 && rand() < 0.7 ? changed : order), true);
      seen.twiceInRound++;
    }

    const got = triples(await scripts.evaluateAlerts(KEYS, args));
    expect({ round, events: got.map((e) => [e.type, e.key]) }).toEqual({ round, events: expected.map((e) => [e.type, e.key]) });
    got.forEach((e, i) => {
      if (e.type === 'opened') {
        expect(e.id).toMatch(/^\d+-\d+$/);
        const placeholder = `opening#${i}`;
        for (const later of expected) {
          if (later.id !== placeholder) continue;
          later.id = e.id;
          seen.openedAndResolvedInOneCall++;
        }
        const state = twin.get(e.key)!;
        if (state.open === placeholder) state.open = e.id;
      } else {
        expect({ round, key: e.key, id: e.id }).toEqual({ round, key: e.key, id: expected[i]!.id });
      }
      stream.push({ ...(e.type === 'opened' ? { id: e.id } : {}), t: e.type, k: e.key, a: e.type === 'opened' ? '' : e.id, p: expected[i]!.payload, at: String(now) });
      seen[e.type]++;
    });

    // The stored state after every round: open ids and sustain start times.
    const open = await redis.hgetall(KEYS[0]);
    const since = await redis.hgetall(KEYS[1]);
    const twinOpen = Object.fromEntries([...twin].filter(([, s]) => s.open !== undefined).map(([n, s]) => [n, s.open!]));
    const twinSince = Object.fromEntries([...twin].filter(([, s]) => s.since !== undefined).map(([n, s]) => [n, String(s.since)]));
    expect({ round, open, since }).toEqual({ round, open: twinOpen, since: twinSince });
  }

  // Every branch of the rule was taken, several times (with this seed: 8 openings exactly at their
  // sustain time, 8 opened and resolved within one call, hundreds held open).
  for (const [what, n] of Object.entries(seen)) expect({ what, enough: n >= 3 }).toEqual({ what, enough: true });
  expect(stream.length).toBeLessThan(MAXLEN); // so MAXLEN trimmed nothing

  // One stream entry per event, in order, with exactly the documented fields.
  const entries = await redis.xrange(KEYS[2], '-', '+');
  expect(entries).toHaveLength(stream.length);
  entries.forEach(([id, flat], i) => {
    const { id: openingId, ...want } = stream[i]!;
    expect(flat.filter((_, j) => j % 2 === 0).sort()).toEqual(['a', 'at', 'k', 'p', 't']);
    expect({ i, ...fieldsOf(flat) }).toEqual({ i, ...want });
    if (openingId !== undefined) expect(id).toBe(openingId);
  });
  // A resolution's alert id is the id of the stream entry that opened it, earlier.
  const position = new Map(entries.map(([id], i) => [id, i]));
  stream.forEach((e, i) => {
    if (e.t === 'resolved') expect(position.get(e.a)).toBeLessThan(i);
  });
});

it('opens one alert, and resolves it once, when two processes evaluate the same crossing at once', async () => {
  const k = new Keys(`${prefix}:c`);
  const KEYS: [string, string, string] = [k.alertsOpen(), k.alertsSince(), k.alertEvents()];
  const other = testRedis(REDIS_URL);
  try {
    const a = scriptsFor(redis);
    const b = scriptsFor(other);
    const key = alertKey('period_usage', 'acme', 'q1', 'hour', 80, '2026-12-02T12:00:00.000Z');
    const now = Date.UTC(2026, 11, 2, 12, 30);
    const call = (i: number, hot: boolean) =>
      (i % 2 ? a : b).evaluateAlerts(KEYS, [now + i, MAXLEN, key, hot ? '1' : '0', hot ? '0' : '1', 0, JSON.stringify({ kind: 'period_usage', caller: i })]);

    const opens = (await Promise.all(Array.from({ length: 20 }, (_, i) => call(i, true)))).map(triples);
    const opened = opens.flat();
    expect(opened).toHaveLength(1);
    expect(opened[0]).toMatchObject({ type: 'opened', key });
    expect(await redis.hgetall(KEYS[0])).toEqual({ [key]: opened[0]!.id });

    const resolves = (await Promise.all(Array.from({ length: 20 }, (_, i) => call(i, false)))).map(triples).flat();
    expect(resolves).toEqual([{ type: 'resolved', key, id: opened[0]!.id }]);
    expect(await redis.hlen(KEYS[0])).toBe(0);

    const entries = await redis.xrange(KEYS[2], '-', '+');
    expect(entries.map(([id, f]) => [id === opened[0]!.id, fieldsOf(f).t, fieldsOf(f).a])).toEqual([
      [true, 'opened', ''],
      [false, 'resolved', opened[0]!.id],
    ]);
  } finally {
    other.disconnect();
  }
});
