// The governance panels: breakers (state, history, force and held jobs), tenants and quota usage,
// open alerts, and the dead-letter queue.

import { useEffect, useState, useCallback } from 'preact/hooks';
import { html, api, usePoll, fmtAgo, fmtIn, pct, ReasonAction, Chart } from './common.js';

export function BreakerCard({ b, admin, history, onChanged }) {
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

export function Breakers({ admin }) {
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

export function Usage({ tenantId, admin }) {
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

export function Tenants({ admin }) {
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
export function alertText(a) {
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
export function Alerts({ admin }) {
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

export function DeadLetter({ admin }) {
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
