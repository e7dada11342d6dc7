/**
 * A Redis Cluster of the test's own: `masters` masters with `replicas` replicas each, every node a
 * redis-server on a random loopback port (`--cluster-enabled yes`), joined with
 * `redis-cli --cluster create`, ready once every node reports `cluster_state:ok` and knows every slot.
 * Nothing on disk survives it (its node files live in a temporary directory removed by `stop()`).
 * Needs `redis-server` and `redis-cli` on the PATH (the CI machine has both).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './net';
import { waitFor } from './services';

const run = promisify(execFile);

export interface ClusterNode {
  port: number;
  /** host:port */
  address: string;
  proc: ChildProcess;
}

export interface PrivateCluster {
  nodes: ClusterNode[];
  /** `host:port,host:port,…` of every node, as REDIS_CLUSTER_NODES takes it. */
  nodesEnv: string;
  /** The node serving `slot` as master now. */
  masterOf(slot: number): Promise<ClusterNode>;
  /** The hash slot of a key (CLUSTER KEYSLOT). */
  slotOf(key: string): Promise<number>;
  /** The node serving a key's slot as master now. */
  masterOfKey(key: string): Promise<ClusterNode>;
  /**
   * A queue name `{base}` or `{base.N}` whose key `keyOf(name)` lands on a master `accept` takes: lets a
   * test or the benchmark put queues and governance on the masters it wants.
   */
  queueTagOn(base: string, keyOf: (queue: string) => string, accept: (master: ClusterNode) => boolean): Promise<{ queue: string; master: ClusterNode }>;
  /** The replica of a master (undefined if it has none). */
  replicaOf(master: ClusterNode): Promise<ClusterNode | undefined>;
  /** A node's INFO replication, as key → value. */
  replication(node: ClusterNode): Promise<Record<string, string>>;
  /** CLUSTER NODES as a live node sees it (for a report). */
  view(): Promise<string>;
  /** Makes a replica master of its master's slots without the master's agreement (CLUSTER FAILOVER TAKEOVER). */
  takeover(replica: ClusterNode): Promise<void>;
  /** kill -9 one node. */
  kill(node: ClusterNode): Promise<void>;
  stop(): Promise<void>;
}

async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 30_000 });
  return stdout;
}

export async function startPrivateCluster(opts: { masters?: number; replicas?: number } = {}): Promise<PrivateCluster> {
  const masters = opts.masters ?? 3;
  const replicas = opts.replicas ?? 1;
  const count = masters * (1 + replicas);
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-cluster-'));
  const nodes: ClusterNode[] = [];
  const exits = new Map<ClusterNode, Promise<void>>();
  try {
    for (let i = 0; i < count; i++) {
      const port = await freePort();
      const nodeDir = join(dir, String(port));
      mkdirSync(nodeDir);
      const proc = spawn(
        'redis-server',
        [
          '--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000',
          // A replica may take over however long its link was down (the default refuses one whose data is
          // older than 10 node timeouts: on a loaded test machine that can leave a slot without a master).
          '--cluster-replica-validity-factor', '0',
          // Replicas sync straight from the master's memory, without waiting for more replicas.
          '--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0',
          '--save', '', '--appendonly', 'no', '--dir', nodeDir,
        ],
        { stdio: 'ignore' },
      );
      proc.on('error', () => undefined);
      const node = { port, address: `127.0.0.1:${port}`, proc };
      exits.set(node, new Promise<void>((r) => proc.on('exit', () => r())));
      nodes.push(node);
    }
    for (const n of nodes) await waitFor(async () => (await cli(n.port, 'PING').catch(() => '')).trim() === 'PONG' || undefined, `cluster node ${n.port}`);
    await cli(nodes[0]!.port, '--cluster', 'create', ...nodes.map((n) => n.address), '--cluster-replicas', String(replicas), '--cluster-yes');
    await waitFor(
      async () => {
        for (const n of nodes) {
          const info = await cli(n.port, 'CLUSTER', 'INFO').catch(() => '');
          if (!info.includes('cluster_state:ok') || !info.includes('cluster_slots_assigned:16384') || !info.includes(`cluster_known_nodes:${count}`)) return undefined;
        }
        return true;
      },
      'the private cluster to be ok on every node',
      30_000,
      100,
    );
  } catch (err) {
    for (const n of nodes) n.proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`this test starts a private Redis Cluster and none could be started: ${(err as Error).message}`);
  }
  const cluster: PrivateCluster = {
    nodes,
    nodesEnv: nodes.map((n) => n.address).join(','),
    async masterOf(slot) {
      for (const n of nodes) {
        if (n.proc.exitCode !== null || n.proc.signalCode !== null) continue;
        const out = await cli(n.port, 'CLUSTER', 'NODES').catch(() => undefined);
        if (out === undefined) continue;
        for (const line of out.split('\n')) {
          // <id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link> <slot> <slot> ...
          const f = line.split(' ');
          if (!f[2]?.includes('master') || f[2].includes('fail')) continue;
          for (const range of f.slice(8)) {
            const [a, b] = range.split('-').map(Number);
            if (slot >= a! && slot <= (b ?? a!)) {
              const port = Number(f[1]!.split('@')[0]!.split(':')[1]);
              const found = nodes.find((x) => x.port === port);
              if (found) return found;
            }
          }
        }
        break;
      }
      throw new Error(`no live master serves slot ${slot}`);
    },
    async slotOf(key) {
      return Number((await cli(nodes[0]!.port, 'CLUSTER', 'KEYSLOT', key)).trim());
    },
    async masterOfKey(key) {
      return cluster.masterOf(await cluster.slotOf(key));
    },
    async queueTagOn(base, keyOf, accept) {
      for (let i = 0; i < 500; i++) {
        const queue = `{${base}${i === 0 ? '' : `.${i}`}}`;
        const master = await cluster.masterOfKey(keyOf(queue));
        if (accept(master)) return { queue, master };
      }
      throw new Error(`no hash tag for ${base} on a master that fits`);
    },
    async replicaOf(master) {
      const out = await cli(master.port, 'CLUSTER', 'NODES');
      const lines = out.split('\n').map((l) => l.split(' '));
      const id = lines.find((f) => f[2]?.includes('myself'))?.[0];
      const replica = lines.find((f) => f[2]?.includes('slave') && f[3] === id);
      const port = replica ? Number(replica[1]!.split('@')[0]!.split(':')[1]) : undefined;
      return nodes.find((n) => n.port === port);
    },
    async replication(node) {
      const out = await cli(node.port, 'INFO', 'replication');
      return Object.fromEntries(out.split(/\r?\n/).filter((l) => l.includes(':')).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]));
    },
    async view() {
      for (const n of nodes) {
        if (n.proc.exitCode !== null || n.proc.signalCode !== null) continue;
        const out = await cli(n.port, 'CLUSTER', 'NODES').catch(() => undefined);
        if (out !== undefined) return out;
      }
      return '(no live node answers)';
    },
    async takeover(replica) {
      await cli(replica.port, 'CLUSTER', 'FAILOVER', 'TAKEOVER');
    },
    async kill(node) {
      node.proc.kill('SIGKILL');
      await exits.get(node);
    },
    async stop() {
      for (const n of nodes) n.proc.kill('SIGKILL');
      await Promise.all([...exits.values()]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return cluster;
}
