// The tollgate dashboard: Preact + htm (no build step), uPlot for charts, everything served by the API.
// It reads the API with the operator's token (kept for the tab's session only) and refreshes every
// second. Admin tokens get the actions; read and tenant tokens only see (a tenant token its own tenant).
import { h, render } from 'preact';
import { useEffect, useRef, useState, useCallback } from 'preact/hooks';
import htm from 'htm';
import uPlot from 'uplot';

const html = htm.bind(h);
const REFRESH_MS = 1000;

const tokenOf = () => sessionStorage.getItem('tollgate.token') || '';

async function api(method, path, { body, reason } = {}) {
  const headers = {};
  const t = tokenOf();
  if (t) headers.authorization = `Bearer ${t}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (reason) headers['x-operator-reason'] = reason;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  const data = text ? JSON.parse(text) : {};
  if (!res.ok) {
    const err = new Error(data.message || res.statusText);
    err.status = res.status;
    err.code = data.error;
    throw err;
  }
  return data;
}

/** Polls `path` every second while `enabled`; returns [data, error]. */
function usePoll(path, enabled = true, deps = []) {
  const [state, setState] = useState({ data: undefined, error: undefined });
  useEffect(() => {
    if (!enabled || !path) return undefined;
    let stop = false;
    let timer;
    const tick = async () => {
      try {
        const data = await api('GET', path);
        if (!stop) setState({ data, error: undefined });
      } catch (error) {
        if (!stop) setState((s) => ({ data: s.data, error }));
      }
      if (!stop) timer = setTimeout(tick, REFRESH_MS);
    };
    tick();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, [path, enabled, ...deps]);
  return [state.data, state.error];
}

const fmtAgo = (iso) => {
  if (!iso) return '';
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : new Date(iso).toLocaleString();
};
const fmtIn = (iso) => {
  if (!iso) return '';
  const ms = Date.parse(iso) - Date.now();
  return ms <= 0 ? 'now' : `in ${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
};
const pct = (x) => `${Math.round(x * 100)} %`;

/** An action that asks for the operator's reason first (sent as X-Operator-Reason), then shows the result. */
function ReasonAction({ label, danger, fields = [], run, testId }) {
  const [open, setOpen] = useState(false);
  const [result, setResult] = useState(undefined);
  const submit = async (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    const values = Object.fromEntries(fields.map((f) => [f.name, form.get(f.name)]));
    try {
      const out = await run(String(form.get('reason')), values);
      setResult({ ok: true, text: out });
      setOpen(false);
    } catch (err) {
      setResult({ ok: false, text: err.message });
    }
  };
  return html`<span>
    <button class=${danger ? 'danger' : ''} data-testid=${testId} onClick=${() => setOpen(!open)}>${label}</button>
    ${open &&
    html`<form class="reason" onSubmit=${submit} data-testid=${`${testId}-form`}>
      <input name="reason" required placeholder="reason (audited)" size="24" data-testid=${`${testId}-reason`} />
      ${fields.map((f) => html`<input name=${f.name} placeholder=${f.placeholder} size="10" />`)}
      <button type="submit" data-testid=${`${testId}-submit`}>${label}</button>
    </form>`}
    ${result && html`<div class=${`result ${result.ok ? '' : 'err'}`} data-testid=${`${testId}-result`}>${result.text}</div>`}
  </span>`;
}

function Chart({ series }) {
  const el = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    if (!el.current) return undefined;
    plot.current = new uPlot(
      {
        width: 320,
        height: 110,
        legend: { show: false },
        scales: { x: { time: true }, y: { range: () => [0, 1] }, calls: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
        axes: [{ size: 24 }, { size: 50, splits: () => [0, 0.5, 1], values: (_u, v) => v.map((x) => `${Math.round(x * 100)}%`) }, { scale: 'calls', side: 1, size: 48 }],
        series: [{}, { label: 'failure rate', stroke: '#b00020', width: 1.5 }, { label: 'calls in the window', stroke: '#3a6ad6', width: 1, scale: 'calls' }],
      },
      [[], [], []],
      el.current,
    );
    return () => plot.current?.destroy();
  }, []);
  useEffect(() => {
    plot.current?.setData(series);
  }, [series]);
  return html`<div ref=${el}></div>`;
}

function BreakerCard({ b, admin, history, onChanged }) {
  const [held, setHeld] = useState(undefined);
  const act = (action) => async (reason) => {
    const after = await api('POST', `/api/v1/breakers/${b.downstream}/${action}`, { reason });
    onChanged();
    return `${action}: now ${after.state}${after.forced ? ` (forced ${after.forced})` : ''}`;
  };
  const heldAct = (action) => async (reason, v) => {
    const body = {};
    if (v.limit) body.limit = Number(v.limit);
    if (v.tenantId) body.tenantId = v.tenantId;
    const out = await api('POST', `/api/v1/breakers/${b.downstream}/held/${action}`, { reason, body });
    onChanged();
    return action === 'replay' ? `replayed ${out.replayed}, skipped ${out.skipped}` : `drained ${out.drained}`;
  };
  const showHeld = async () => setHeld(held ? undefined : await api('GET', `/api/v1/breakers/${b.downstream}/held?limit=20`));
  const transitions = (b.transitions || []).slice(0, 5);
  return html`<div class="card" data-testid=${`breaker-${b.downstream}`} data-state=${b.state}>
    <h3>${b.downstream} <span class=${`state ${b.state}`} data-testid="state">${b.state}</span>
      ${b.forced && html`<span class="forced" data-testid="forced">forced ${b.forced}</span>`}
      ${b.observeOnly && html`<span class="forced">observe only</span>`}</h3>
    <dl>
      <dt>window</dt><dd>${b.window.calls} calls, ${b.window.failures} failed (${pct(b.window.failureRate)})${b.window.slow ? `, ${b.window.slow} slow` : ''}</dd>
      ${b.state === 'open' && html`<dt>next probe</dt><dd data-testid="next-probe">${b.nextProbeAt ? fmtIn(b.nextProbeAt) : 'when released'}</dd>`}
      ${b.state === 'half-open' && html`<dt>probes</dt><dd>${b.probes.succeeded} of ${b.probes.allowed} succeeded</dd>`}
      <dt>trips</dt><dd>${b.trips}</dd>
      <dt>held jobs</dt><dd><span data-testid="held">${b.held}</span> ${b.held > 0 && html`<button onClick=${showHeld}>${held ? 'hide' : 'per tenant'}</button>`}</dd>
      ${b.reason && html`<dt>reason</dt><dd>${b.reason}</dd>`}
    </dl>
    ${held && html`<table><tbody>${Object.entries(held.byTenant || {}).map(([t, n]) => html`<tr><td>${t}</td><td>${n}</td></tr>`)}</tbody></table>`}
    <${Chart} series=${history} />
    ${transitions.length > 0 &&
    html`<ul class="transitions">${transitions.map((t) => html`<li>${t.from} → ${t.to}: ${t.reason} (${t.actor}, ${fmtAgo(t.at)})</li>`)}</ul>`}
    ${admin &&
    html`<div class="actions">
      <${ReasonAction} label="force open" danger testId=${`open-${b.downstream}`} run=${act('open')} />
      <${ReasonAction} label="force closed" testId=${`close-${b.downstream}`} run=${act('close')} />
      <${ReasonAction} label="release" testId=${`release-${b.downstream}`} run=${act('release')} />
      <${ReasonAction} label="reset" testId=${`reset-${b.downstream}`} run=${act('reset')} />
      <${ReasonAction} label="replay held" testId=${`replay-${b.downstream}`} fields=${[{ name: 'limit', placeholder: 'limit' }, { name: 'tenantId', placeholder: 'tenant' }]} run=${heldAct('replay')} />
      <${ReasonAction} label="drain held" danger testId=${`drain-${b.downstream}`} fields=${[{ name: 'limit', placeholder: 'limit' }, { name: 'tenantId', placeholder: 'tenant' }]} run=${heldAct('drain')} />
    </div>`}
  </div>`;
}

function Breakers({ admin }) {
  const [nonce, setNonce] = useState(0);
  const [data, error] = usePoll('/api/v1/breakers', true, [nonce]);
  // The window's history over the last 15 minutes, from the observers' flow samples.
  const [flow] = usePoll('/api/v1/flow');
  const historyOf = (d) => {
    const points = (flow?.items || []).find((x) => x.downstream === d)?.points.filter((p) => p.breaker) || [];
    return [points.map((p) => Date.parse(p.at) / 1000), points.map((p) => p.breaker.failureRate), points.map((p) => p.breaker.calls)];
  };
  const [details, setDetails] = useState({});
  // The latest transitions come with the per-breaker view: read them for each card alongside the list.
  useEffect(() => {
    if (!data) return;
    Promise.all(data.items.map((b) => api('GET', `/api/v1/breakers/${b.downstream}`).catch(() => b))).then((items) =>
      setDetails(Object.fromEntries(items.map((b) => [b.downstream, b]))),
    );
  }, [data]);
  if (error?.status === 403) return null;
  return html`<section>
    <h2>Circuit breakers ${error && html`<span class="err">${error.message}</span>`}</h2>
    <div class="cards" data-testid="breakers">${(data?.items || []).map(
      (b) => html`<${BreakerCard} key=${b.downstream} b=${{ ...b, transitions: details[b.downstream]?.transitions }} admin=${admin} history=${historyOf(b.downstream)} onChanged=${() => setNonce(nonce + 1)} />`,
    )}</div>
  </section>`;
}

function Usage({ tenantId, admin }) {
  const [u, setU] = useState(undefined);
  const [err, setErr] = useState(undefined);
  const load = useCallback(() => api('GET', `/api/v1/quotas/${encodeURIComponent(tenantId)}/usage`).then(setU, setErr), [tenantId]);
  useEffect(() => {
    load();
  }, [load]);
  if (err) return html`<div class="err">${err.message}</div>`;
  if (!u) return html`<div>loading…</div>`;
  const bar = (used, limit) => html`<span class="bar"><span class=${used >= limit ? 'hot' : ''} style=${`width:${Math.min(100, (used / Math.max(1, limit)) * 100)}%`}></span></span>`;
  return html`<div data-testid=${`usage-${tenantId}`}>
    ${u.quotas.map(
      (q) => html`<div>
        <strong>${Object.keys(q.scope || {}).length ? JSON.stringify(q.scope) : 'all jobs'}</strong>${q.paused ? ' (paused)' : ''}
        ${q.rateTokens && html`<div>rate tokens ${bar(q.rateTokens.burst - q.rateTokens.available, q.rateTokens.burst)} ${q.rateTokens.available.toFixed?.(1) ?? q.rateTokens.available} of ${q.rateTokens.burst} left (${q.rateTokens.rate}/s)</div>`}
        ${q.maxConcurrent !== undefined && q.maxConcurrent !== null && html`<div>in flight ${bar(q.inFlight, q.maxConcurrent)} ${q.inFlight} of ${q.maxConcurrent}</div>`}
        ${Object.entries(q.periods || {}).map(([p, v]) => html`<div>${p} ${bar(v.used, v.limit)} ${v.used} of ${v.limit}, resets ${new Date(v.resetsAt).toLocaleString()}</div>`)}
      </div>`,
    )}
    <div>waiting: ${u.waiting.total} ${Object.entries(u.waiting.byDownstream || {}).map(([d, n]) => `${d} ${n}`).join(', ')}</div>
    ${admin &&
    html`<div class="actions">
      <${ReasonAction} label="pause tenant" danger testId=${`pause-${tenantId}`} run=${async (reason) => (await api('POST', `/api/v1/quotas/${encodeURIComponent(tenantId)}/pause`, { reason, body: {} }), load(), 'paused')} />
      <${ReasonAction} label="resume tenant" testId=${`resume-${tenantId}`} run=${async (reason) => (await api('POST', `/api/v1/quotas/${encodeURIComponent(tenantId)}/resume`, { reason, body: {} }), load(), 'resumed')} />
    </div>`}
  </div>`;
}

function Tenants({ admin }) {
  const [sort, setSort] = useState('busiest');
  const [q, setQ] = useState('');
  const [cursors, setCursors] = useState([undefined]);
  const [open, setOpen] = useState(undefined);
  const cursor = cursors[cursors.length - 1];
  const path = `/api/v1/tenants?sort=${sort}&limit=50${q ? `&q=${encodeURIComponent(q)}` : ''}${cursor ? `&cursor=${cursor}` : ''}`;
  const [data, error] = usePoll(path);
  const reset = () => setCursors([undefined]);
  return html`<section>
    <h2>Tenants ${data && html`<span class="status" data-testid="tenants-total">${data.total} tenants</span>`} ${error && html`<span class="err">${error.message}</span>`}</h2>
    <div class="toolbar">
      <label>sort <select data-testid="tenants-sort" value=${sort} onChange=${(e) => (setSort(e.target.value), reset())}>
        <option value="busiest">busiest</option><option value="starving">starving</option><option value="waiting">most waiting</option><option value="tenant">tenant id</option>
      </select></label>
      <input placeholder="filter tenant id" value=${q} data-testid="tenants-filter" onInput=${(e) => (setQ(e.target.value), reset())} />
      <button disabled=${cursors.length < 2} onClick=${() => setCursors(cursors.slice(0, -1))}>previous</button>
      <button disabled=${!data?.nextCursor} data-testid="tenants-next" onClick=${() => setCursors([...cursors, data.nextCursor])}>next</button>
    </div>
    <table data-testid="tenants">
      <thead><tr><th>tenant</th><th>waiting</th><th>in flight</th><th>share / entitled</th><th>admitted (15 min)</th><th>waiting for a turn</th><th>quotas</th><th>throttles</th></tr></thead>
      <tbody>${(data?.items || []).map(
        (t) => html`<tr class="tenant" data-testid=${`tenant-${t.tenantId}`} onClick=${() => setOpen(open === t.tenantId ? undefined : t.tenantId)}>
            <td>${t.tenantId}${t.paused ? ' (paused)' : ''}</td>
            <td title=${JSON.stringify(t.waiting.byDownstream)}>${t.waiting.total}</td>
            <td title=${JSON.stringify(t.inFlight.byDownstream)}>${t.inFlight.total}</td>
            <td>${Object.entries(t.share || {}).map(([d, v]) => `${d} ${pct(v.share)} / ${pct(v.entitlement)}`).join(', ')}</td>
            <td>${t.admittedLast15m}</td>
            <td>${t.waitingForTurnMs !== undefined ? `${(t.waitingForTurnMs / 1000).toFixed(1)} s` : ''}</td>
            <td>${t.quotas}</td>
            <td>${t.throttles}</td>
          </tr>
          ${open === t.tenantId && html`<tr><td colspan="8"><${Usage} tenantId=${t.tenantId} admin=${admin} /></td></tr>`}`,
      )}</tbody>
    </table>
  </section>`;
}

/** What an alert is about, in a line. */
function alertText(a) {
  const subject = a.tenantId ? `tenant ${a.tenantId}${a.downstream ? ` on ${a.downstream}` : ''}` : `downstream ${a.downstream}`;
  switch (a.kind) {
    case 'period_usage':
      return `${subject}: ${Math.round(a.value)} % of its ${a.window?.period ?? ''} total (${a.detail.used} of ${a.detail.limit}), past ${a.threshold} %`;
    case 'saturation':
      return `${subject}: saturated (${a.detail.cause}) for over ${a.threshold} ms`;
    case 'backlog':
      return `${subject}: ${a.detail.waiting} waiting, ${Math.round(a.value)} % of maxWaiting`;
    case 'starvation':
      return `${subject}: not served for ${Math.round(a.value / 1000)} s`;
    case 'capacity_cut':
      return `${subject}: adaptive capacity ${a.detail.capacity} of ${a.detail.ceiling}`;
    case 'breaker':
      return `${subject}: breaker ${a.detail.to}${a.detail.forced ? ' (forced)' : ''}: ${a.detail.reason}`;
    default:
      return subject;
  }
}

/** Open alerts, newest first, with their delivery state; an admin can acknowledge them. */
function Alerts({ admin }) {
  const [nonce, setNonce] = useState(0);
  const [list, err] = usePoll('/api/v1/alerts?state=open&limit=50', true, [nonce]);
  if (err?.status === 403 && !list) return null;
  const items = list?.items || [];
  const ack = (a) => async (reason) => {
    await api('POST', `/api/v1/alerts/${a.id}/ack`, { reason, body: {} });
    setNonce(nonce + 1);
    return 'acknowledged';
  };
  return html`<section>
    <h2>Open alerts <span class="status" data-testid="alerts-open">${list ? `${items.length}${list.nextCursor ? '+' : ''} open` : ''}</span> ${err && html`<span class="err">${err.message}</span>`}</h2>
    ${list && items.length === 0 && html`<p data-testid="alerts-none">No open alert.</p>`}
    ${items.length > 0 &&
    html`<table data-testid="alerts"><thead><tr><th>kind</th><th>alert</th><th>opened</th><th>delivery</th><th></th></tr></thead>
    <tbody>${items.map(
      (a) => html`<tr data-testid=${`alert-${a.id}`}>
        <td>${a.kind}</td><td style="text-align:left;white-space:normal">${alertText(a)}</td><td>${fmtAgo(a.openedAt)}</td>
        <td>${a.delivery ? `${a.delivery.delivered} sent${a.delivery.pending ? `, ${a.delivery.pending} pending` : ''}${a.delivery.dead ? `, ${a.delivery.dead} dead` : ''}` : ''}</td>
        <td>${a.acked ? `acked by ${a.acked.by}` : admin && html`<${ReasonAction} label="acknowledge" testId=${`ack-${a.id}`} run=${ack(a)} />`}</td></tr>`,
    )}</tbody></table>`}
  </section>`;
}

function DeadLetter({ admin }) {
  const [reason, setReason] = useState('');
  const [tenant, setTenant] = useState('');
  const [cursors, setCursors] = useState([undefined]);
  const [nonce, setNonce] = useState(0);
  const cursor = cursors[cursors.length - 1];
  const [summary, sErr] = usePoll('/api/v1/dead-letter/summary', true, [nonce]);
  const path = `/api/v1/dead-letter?limit=20${reason ? `&reason=${encodeURIComponent(reason)}` : ''}${tenant ? `&tenantId=${encodeURIComponent(tenant)}` : ''}${cursor ? `&cursor=${cursor}` : ''}`;
  const [list, lErr] = usePoll(path, true, [nonce]);
  const reset = () => setCursors([undefined]);
  if (sErr?.status === 403 && !list) return null;
  const [done, setDone] = useState(undefined);
  // The row goes once its job is back in ingress: the result is shown above the list.
  const redrive = (j) => async (why) => {
    const out = await api('POST', `/api/v1/dead-letter/${encodeURIComponent(j.id)}/redrive`, { reason: why });
    const text = `${j.job.name} · ${j.ingressJobId}: ${out.redriven ? `back in ingress as ${out.ingressJobId}` : `already re-driven as ${out.ingressJobId}`}`;
    setDone(text);
    setNonce(nonce + 1);
    return text;
  };
  return html`<section>
    <h2>Dead-letter ${summary && html`<span class="status" data-testid="dl-in-queue">${summary.inQueue} in the queue</span>`} ${lErr && html`<span class="err">${lErr.message}</span>`}</h2>
    ${summary &&
    html`<div class="toolbar" data-testid="dl-reasons">${Object.entries(summary.byReason)
      .sort((a, b) => b[1] - a[1])
      .map(([r, n]) => html`<button onClick=${() => (setReason(reason === r ? '' : r), reset())} class=${reason === r ? 'danger' : ''}>${r} ${n}</button>`)}</div>`}
    ${done && html`<div class="result" data-testid="dl-result">${done}</div>`}
    <div class="toolbar">
      <input placeholder="tenant" value=${tenant} data-testid="dl-tenant" onInput=${(e) => (setTenant(e.target.value), reset())} />
      <button disabled=${cursors.length < 2} onClick=${() => setCursors(cursors.slice(0, -1))}>previous</button>
      <button disabled=${!list?.nextCursor} onClick=${() => setCursors([...cursors, list.nextCursor])}>next</button>
    </div>
    <table data-testid="dead-letter"><thead><tr><th>job</th><th>reason</th><th>tenant</th><th>downstream</th><th>when</th><th>message</th><th></th></tr></thead>
    <tbody>${(list?.items || []).map(
      (j) => html`<tr data-testid=${`dl-${j.ingressJobId}`}>
        <td title=${JSON.stringify(j.job.data)}>${j.job.name} · ${j.ingressJobId}</td><td>${j.reason}</td><td>${j.tenantId ?? ''}</td><td>${j.downstream ?? ''}</td>
        <td>${fmtAgo(j.rejectedAt)}</td><td style="text-align:left;white-space:normal">${j.message}</td>
        <td>${admin && html`<${ReasonAction} label="re-drive" testId=${`redrive-${j.ingressJobId}`} run=${redrive(j)} />`}</td></tr>`,
    )}</tbody></table>
  </section>`;
}

function FlowChart({ points }) {
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

function Flow() {
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

function Places() {
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
const HOLDS = {
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
const holdOf = (reason) => HOLDS[reason] ?? reason;

/** Where a job is, in words. */
function describe(j) {
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

function Lookup() {
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

function App() {
  const [token, setToken] = useState(tokenOf());
  const [me, meError] = usePoll('/api/v1/whoami', true, [token]);
  // Polled like the rest, so a token that stops working shows at once.
  const save = (ev) => {
    sessionStorage.setItem('tollgate.token', ev.target.value);
    setToken(ev.target.value);
  };
  const admin = Boolean(me?.admin);
  const signedIn = me?.signedIn === true;
  return html`<div key=${token}>
    <header>
      <h1>tollgate</h1>
      <label>API token <input type="password" size="28" autocomplete="off" value=${token} onChange=${save} data-testid="token" /></label>
      <span class="who" data-testid="whoami">${
        signedIn ? `${me.identity}${me.tenantId ? ` (tenant ${me.tenantId})` : ''}${admin ? ' · admin' : ' · read only'}` : me ? me.message : meError ? meError.message : ''
      }</span>
    </header>
    ${signedIn
      ? html`<main>
          <${Breakers} admin=${admin} />
          <${Tenants} admin=${admin} />
          <${Alerts} admin=${admin} />
          <${Flow} />
          <${Places} />
          <${DeadLetter} admin=${admin} />
          <${Lookup} />
        </main>`
      : me && html`<main><p data-testid="sign-in">This API needs a token: enter one above (an admin token can change things; a read or tenant token only sees).</p></main>`}
  </div>`;
}

const root = document.getElementById('app');
root.textContent = ''; // the "loading…" placeholder
render(html`<${App} />`, root);
