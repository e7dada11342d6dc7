// Where jobs are: the flow chart, the places (waiting, held, in flight per downstream), and the job
// lookup that says where one job is and why.

import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { html, api, usePoll, fmtAgo, fmtIn } from './common.js';

export function FlowChart({ points }) {
  const el = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    plot.current = new uPlot(
      {
        width: 420,
        height: 150,
        legend: { show: true },
        scales: { x: { time: true }, n: { range: (_u, _min, max) => [0, Math.max(1, max)] }, w: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
        axes: [{ size: 24 }, { scale: 'n', size: 48 }, { scale: 'w', side: 1, size: 52 }],
        series: [
          {},
          { label: 'admitted', stroke: '#3a6ad6', width: 1.5, scale: 'n' },
          { label: 'dead-lettered', stroke: '#b00020', width: 1.5, scale: 'n' },
          { label: 'waiting', stroke: '#b26a00', width: 1.5, scale: 'w' },
        ],
      },
      [[], [], [], []],
      el.current,
    );
    return () => plot.current?.destroy();
  }, []);
  useEffect(() => {
    plot.current?.setData([points.map((p) => Date.parse(p.at) / 1000), points.map((p) => p.admitted), points.map((p) => p.deadLettered), points.map((p) => p.waiting)]);
  }, [points]);
  return html`<div ref=${el}></div>`;
}

export function Flow() {
  const [data, error] = usePoll('/api/v1/flow');
  if (error?.status === 403) return null;
  return html`<section>
    <h2>Flow, last 15 minutes ${error && html`<span class="err">${error.message}</span>`}</h2>
    <div class="cards">${(data?.items || []).map((d) => {
      const last = d.points[d.points.length - 1];
      return html`<div class="card" data-testid=${`flow-${d.downstream}`}>
        <h3>${d.downstream}</h3>
        <dl>
          <dt>capacity</dt><dd data-testid="capacity">${last ? `${last.inFlight} of ${last.capacity} in use` : '…'}</dd>
          <dt>fairness</dt><dd data-testid="fairness">${d.fairness.jain !== undefined ? `Jain ${d.fairness.jain.toFixed(2)} over ${d.fairness.tenants} tenants` : 'no admissions yet'}</dd>
        </dl>
        <${FlowChart} points=${d.points} />
      </div>`;
    })}</div>
  </section>`;
}

export function Places() {
  const [q, error] = usePoll('/api/v1/queues');
  if (error?.status === 403) return null;
  const row = (place, queue, c, extra = {}) => html`<tr>
    <td>${place}</td><td>${queue}</td><td>${extra.capacity ?? ''}</td><td>${extra.inFlight ?? ''}</td><td>${extra.waiting ?? ''}</td>
    <td>${(c.waiting ?? 0) + (c.prioritized ?? 0)}</td><td>${c.active ?? 0}</td><td>${c.delayed ?? 0}</td><td>${c.completed ?? 0}</td><td>${c.failed ?? 0}</td></tr>`;
  return html`<section>
    <h2>Places ${error && html`<span class="err">${error.message}</span>`}</h2>
    <table data-testid="places"><thead><tr><th>place</th><th>queue</th><th>capacity</th><th>in flight</th><th>waiting place</th><th>queued</th><th>active</th><th>delayed</th><th>completed</th><th>failed</th></tr></thead>
    <tbody>${q && [row('ingress', q.ingress.queue, q.ingress.counts), ...q.exec.map((e) => row(`exec · ${e.downstream}`, e.queue, e.counts, e)), row('dead-letter', q.deadLetter.queue, q.deadLetter.counts)]}</tbody></table>
  </section>`;
}

/** What holds a waiting job, in words (the reasons of GET /api/v1/jobs/:id). */
export const HOLDS = {
  rate: "its quota's rate (no token left yet)",
  concurrency: "its quota's max concurrent jobs (all in use)",
  period: "its quota's period total (used up until the period resets)",
  paused: 'its paused quota',
  throttled: 'a throttle on its tenant or job type',
  capacity: "the downstream's capacity (every slot busy; its fair turn comes)",
  share: 'its max share of the downstream',
  borrow: 'its reserve plus borrow limit on the downstream',
  'breaker-open': "the downstream's open circuit breaker",
  'breaker-half-open': "the downstream's half-open circuit breaker (only probes go through)",
};
export const holdOf = (reason) => HOLDS[reason] ?? reason;

/** Where a job is, in words. */
export function describe(j) {
  const where = {
    ingress: `in ingress (${j.state}): the gate has not decided it yet`,
    waiting: `waiting on ${j.downstream}`,
    exec: `admitted to ${j.queue} (${j.state})`,
    'dead-letter': `dead-lettered (${j.decision?.reason ?? j.state})`,
  }[j.place];
  const parts = [`Job ${j.id}${j.tenantId ? ` of ${j.tenantId}` : ''} is ${where}.`];
  if (j.waiting) {
    parts.push(`Held by ${holdOf(j.waiting.reason)}${j.waiting.until ? ` until ${new Date(j.waiting.until).toLocaleTimeString()}` : ''} since ${fmtAgo(j.waiting.since)}.`);
    if (j.waiting.position) parts.push(`Position ${j.waiting.position} in its tenant's line${j.waiting.estimatedAdmissionAt ? `, expected to start ${fmtIn(j.waiting.estimatedAdmissionAt)}` : ''}.`);
  }
  if (j.decision?.message) parts.push(j.decision.message);
  if (j.finished) parts.push(`It ${j.finished.outcome} ${fmtAgo(j.finished.at)}.`);
  return parts.join(' ');
}

export function Lookup() {
  const [out, setOut] = useState(undefined);
  const submit = async (ev) => {
    ev.preventDefault();
    const id = new FormData(ev.target).get('id');
    try {
      const j = await api('GET', `/api/v1/jobs/${encodeURIComponent(id)}`);
      setOut({ text: describe(j), raw: j });
    } catch (err) {
      setOut({ text: err.status === 404 ? `No job ${id} (or not one this token may see).` : err.message });
    }
  };
  return html`<section>
    <h2>Find a job</h2>
    <form onSubmit=${submit} class="toolbar"><input name="id" placeholder="ingress job id" required data-testid="lookup-id" /> <button>Find</button></form>
    ${out && html`<div class="lookup" data-testid="lookup-result">${out.text}</div>`}
    ${out?.raw && html`<details><summary>details</summary><pre>${JSON.stringify(out.raw, null, 2)}</pre></details>`}
  </section>`;
}
