/**
 * A real webhook receiver on loopback for the alert tests: verifies every request's signature with
 * the standardwebhooks library (as a receiver following the convention would), records what came,
 * and answers as the test tells it (a status, a Retry-After, or never). It can go down and come back
 * on the same port.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface Received {
  id: string;
  timestamp: string;
  body: any;
  /** The library's verifier accepted the signature. */
  verified: boolean;
  error?: string;
  at: number;
  /** How many requests with this webhook-id came so far, this one included. */
  attempt: number;
  status: number | 'hang';
}

export type Answer = number | 'hang' | { status: number; retryAfter?: string };

export interface Receiver {
  readonly url: string;
  readonly received: Received[];
  /** Decides each answer; default 204. */
  answer: (r: Omit<Received, 'status'>) => Answer;
  /** Distinct webhook-ids answered 2xx. */
  delivered(): Set<string>;
  stop(): Promise<void>;
  /** Listens again on the same port. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export const TEST_SECRET = `whsec_${Buffer.from('tollgate-test-webhook-secret-0123456789').toString('base64')}`;

export async function startReceiver(secret = TEST_SECRET): Promise<Receiver> {
  const wh = new Webhook(secret);
  const seen = new Map<string, number>();
  const hung: ServerResponse[] = [];
  let server: Server | undefined;
  let port = 0;
  const rec: Receiver = {
    url: '',
    received: [],
    answer: () => 204,
    delivered() {
      return new Set(rec.received.filter((r) => typeof r.status === 'number' && r.status < 300).map((r) => r.id));
    },
    async stop() {
      const s = server;
      server = undefined;
      for (const res of hung.splice(0)) res.destroy();
      if (s) {
        s.closeAllConnections();
        await new Promise<void>((r) => s.close(() => r()));
      }
    },
    async restart() {
      await listen();
    },
    async close() {
      await rec.stop();
    },
  };
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const headers = {
        'webhook-id': String(req.headers['webhook-id'] ?? ''),
        'webhook-timestamp': String(req.headers['webhook-timestamp'] ?? ''),
        'webhook-signature': String(req.headers['webhook-signature'] ?? ''),
      };
      let verified = false;
      let error: string | undefined;
      try {
        wh.verify(raw, headers);
        verified = true;
      } catch (err) {
        error = (err as Error).message;
      }
      const attempt = (seen.get(headers['webhook-id']) ?? 0) + 1;
      seen.set(headers['webhook-id'], attempt);
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
      }
      const base = { id: headers['webhook-id'], timestamp: headers['webhook-timestamp'], body, verified, ...(error ? { error } : {}), at: Date.now(), attempt };
      const a = verified ? rec.answer(base) : 400;
      if (a === 'hang') {
        rec.received.push({ ...base, status: 'hang' });
        hung.push(res);
        return;
      }
      const status = typeof a === 'number' ? a : a.status;
      rec.received.push({ ...base, status });
      if (typeof a === 'object' && a.retryAfter !== undefined) res.setHeader('retry-after', a.retryAfter);
      res.statusCode = status;
      res.end();
    });
  };
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer(handle);
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        port = (s.address() as AddressInfo).port;
        server = s;
        resolve();
      });
    });
  await listen();
  (rec as { url: string }).url = `http://127.0.0.1:${port}/hook`;
  return rec;
}
