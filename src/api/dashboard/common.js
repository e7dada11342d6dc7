// Shared by the dashboard's panels: the API client (the operator's token, kept for the tab's session),
// polling, formatting, the reason-asking action and the chart.
import { h } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import uPlot from 'uplot';

export const html = htm.bind(h);
export const REFRESH_MS = 1000;

export const tokenOf = () => sessionStorage.getItem('tollgate.token') || '';

export async function api(method, path, { body, reason } = {}) {
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
export function usePoll(path, enabled = true, deps = []) {
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

export const fmtAgo = (iso) => {
  if (!iso) return '';
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : new Date(iso).toLocaleString();
};
export const fmtIn = (iso) => {
  if (!iso) return '';
  const ms = Date.parse(iso) - Date.now();
  return ms <= 0 ? 'now' : `in ${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
};
export const pct = (x) => `${Math.round(x * 100)} %`;

/** An action that asks for the operator's reason first (sent as X-Operator-Reason), then shows the result. */
export function ReasonAction({ label, danger, fields = [], run, testId }) {
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

export function Chart({ series }) {
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
