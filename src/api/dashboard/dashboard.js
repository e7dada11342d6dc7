// The tollgate dashboard: Preact + htm (no build step), uPlot for charts, everything served by the API.
// It reads the API with the operator's token (kept for the tab's session only) and refreshes every
// second. Admin tokens get the actions; read and tenant tokens only see (a tenant token its own tenant).
import { render } from 'preact';
import { useState } from 'preact/hooks';
import { html, tokenOf, api, usePoll } from './common.js';
import { Breakers, Tenants, Alerts, DeadLetter } from './panels.js';
import { Flow, Places, Lookup } from './places.js';

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
