// runs.js: the runs table (live), per-run Pause / Resume / Stop, and the
// form that creates a run.
import { api, h, clear, toast, fmtTime, fmtDur, fmtRate, fmtPct, fmtMS, isZeroTime, keeperNow, stateChip, summarize,
  showFieldError, field, applyRole, live, labelCells } from './lib.js';

// armed remembers a Stop pressed once (run id → until when), across the
// table's redraws.
const armed = new Map();

/** runActions returns Pause/Resume and Stop buttons for a run. */
export function runActions(run, after) {
  if (run.state === 'stopped') return [h('span.muted.small', run.end_reason || 'ended'), ' ',
    h('a.report-link', { href: `#/runs/${encodeURIComponent(run.id)}/report` }, 'Report')];
  const act = async (verb, btn) => {
    btn.disabled = true;
    try {
      await api('POST', `/runs/${encodeURIComponent(run.id)}/${verb}`);
      toast(`${run.name}: ${verb === 'stop' ? 'stopped' : verb === 'pause' ? 'paused' : 'resumed'}.`);
    } catch (e) { toast(`${run.name}: could not ${verb}: ${e.message}`, true); }
    after && after();
  };
  const toggle = run.state === 'running'
    ? h('button', { type: 'button', 'data-role': 'operator', 'data-act': 'pause', onclick: ev => act('pause', ev.currentTarget) }, 'Pause')
    : h('button', { type: 'button', 'data-role': 'operator', 'data-act': 'resume', onclick: ev => act('resume', ev.currentTarget) }, 'Resume');
  const stop = h('button', { type: 'button', 'data-role': 'operator', 'data-act': 'stop' }, 'Stop');
  const arm = on => {
    stop.textContent = on ? 'Confirm stop' : 'Stop';
    stop.classList.toggle('danger', on);
    stop.setAttribute('aria-label', on ? `Press again to stop ${run.name} for good` : `Stop ${run.name}`);
  };
  arm((armed.get(run.id) || 0) > Date.now());
  stop.addEventListener('click', () => {
    if ((armed.get(run.id) || 0) > Date.now()) { armed.delete(run.id); act('stop', stop); return; }
    armed.set(run.id, Date.now() + 5000);
    arm(true);
    setTimeout(() => { if (stop.isConnected) arm((armed.get(run.id) || 0) > Date.now()); }, 5100);
  });
  return [toggle, ' ', stop];
}

export function koiCell(run) {
  const c = (run.koi_now && run.koi_now.connected) || 0;
  // After a shed only the effective koi are wanted; show that target.
  const target = run.effective_koi ?? run.koi;
  const pct = target ? Math.min(100, 100 * c / target) : 0;
  const k = run.koi_now || {};
  const notes = [];
  if (run.state !== 'stopped') {
    if (k.booting) notes.push(`${k.booting} booting`);
    if (k.reconnecting) notes.push(`${k.reconnecting} reconnecting`);
    if (k.failed) notes.push(`${k.failed} failed`);
    if (c < target) notes.push(run.ramp ? `ramp ${fmtRate(run.ramp)}/s` : 'all at once');
  }
  if (run.shed_percent) notes.push(`shed ${run.shed_percent}% of ${run.koi}`);
  return h('td.koi', { 'data-connected': c, 'data-target': target },
    h('div.num', { style: 'text-align:left' }, h('b', String(c)), ` / ${target}`),
    run.state === 'stopped' ? null : h('div.progress' + (run.partial ? '.warn' : ''), { title: run.partial || `${c} of ${target} connected` }, h('span', { style: `width:${pct}%` })),
    notes.length ? h('div.muted.small', notes.join(' · ')) : null,
    run.partial ? h('div.small', { style: 'color:var(--warn)' }, run.partial) : null,
    run.refused ? h('div.small', { style: 'color:var(--bad)' }, 'refused: ' + Object.entries(run.refused).map(([s, w]) => `${s}: ${w}`).join('; ')) : null);
}

export function elapsed(run) {
  if (isZeroTime(run.started_at)) return '–';
  const end = isZeroTime(run.ended_at) ? keeperNow() : Date.parse(run.ended_at);
  const e = fmtDur(end - Date.parse(run.started_at));
  if (run.duration_ms && run.state !== 'stopped') return `${e} of ${fmtDur(run.duration_ms)}`;
  if (!run.duration_ms && run.state !== 'stopped') return `${e} · always-on`;
  return e;
}

export function mount(main) {
  let runs = [];
  const metrics = new Map(); // run id → summary
  const body = h('tbody');
  const table = h('div.table-wrap', h('table#runs-table', h('thead', h('tr',
    h('th', 'Status'), h('th', 'Name'), h('th.hide-sm', 'Owner'), h('th.hide-sm', 'Labels'), h('th.hide-sm', 'Started'),
    h('th', 'Elapsed'), h('th.num', 'Schools'), h('th', 'Koi connected / target'), h('th.num', 'Req/s'),
    h('th.num', 'Errors'), h('th.num', { title: 'slowest API method over the last 5 s' }, 'p95'), h('th', ''))), body));
  const formBox = h('div');
  const newBtn = h('button.primary#new-run', { type: 'button', 'data-role': 'admin', onclick: () => openForm() }, 'New run');
  const auditBody = h('tbody');
  main.append(h('div.page-head', h('div.grow', h('h1', 'Runs'),
    h('div.muted.small', 'Every run, live. Requests, errors and p95 cover the last 5 seconds.')), newBtn), formBox, table,
  h('h2', 'Recent changes'),
  h('div.table-wrap', h('table#audit', h('thead', h('tr', h('th', 'When'), h('th', 'Who'), h('th', 'What'), h('th.hide-sm', 'Detail'))), auditBody)));

  function render() {
    const gsw = live.status && live.status.switch;
    const rows = runs.map(r => {
      const m = metrics.get(r.id);
      const schools = new Set((r.assignments || []).map(a => a.school));
      const globalHold = r.state === 'running' && gsw && gsw.state !== 'running';
      return h('tr', { 'data-run': r.id, 'data-state': r.state },
        h('td', stateChip(r.state), globalHold ? h('div.muted.small', `held: all ${gsw.state}`) : null),
        h('td', h('a', { href: '#/runs/' + encodeURIComponent(r.id) }, r.name), h('div.muted.small.mono', r.id)),
        h('td.hide-sm', r.owner || '–'),
        h('td.hide-sm', Object.entries(r.labels || {}).map(([k, v]) => h('span.label-tag', `${k}=${v}`))),
        h('td.hide-sm', fmtTime(r.started_at)),
        h('td', elapsed(r)),
        h('td.num', r.state === 'stopped' ? '–' : String(schools.size)),
        koiCell(r),
        h('td.num.rps', m ? fmtRate(m.rate) : '–'),
        h('td.num', m ? h('span', { style: m.errPct > 1 ? 'color:var(--bad);font-weight:600' : '' }, fmtPct(m.errPct)) : '–'),
        h('td.num', m ? fmtMS(m.p95) : '–'),
        h('td.actions', runActions(r, refresh)));
    });
    if (!rows.length) rows.push(h('tr', h('td.empty', { colspan: 12 }, 'No runs yet. Create one with “New run”: pick a behavior set and a target.')));
    body.replaceChildren(...rows);
    labelCells(body.closest('table'));
    applyRole(body);
  }

  let auditAt = 0;
  async function refreshAudit() {
    if (Date.now() - auditAt < 3000) return;
    auditAt = Date.now();
    try {
      const entries = await api('GET', '/audit?limit=8');
      auditBody.replaceChildren(...(entries.length ? entries.map(e => h('tr', h('td', fmtTime(e.at)), h('td', e.actor),
        h('td', e.action, e.object ? [' ', h('span.mono', e.object)] : null), h('td.hide-sm.muted.small', e.detail || '')))
        : [h('tr', h('td.empty', { colspan: 4 }, 'Nothing changed yet.'))]));
      labelCells(auditBody.closest('table'));
    } catch { /* the header shows reachability */ }
  }

  async function refresh() {
    refreshAudit();
    try {
      const list = await api('GET', '/runs');
      list.sort((a, b) => (a.state === 'stopped') - (b.state === 'stopped') || Date.parse(b.created_at) - Date.parse(a.created_at));
      runs = list;
      await Promise.all(runs.filter(r => r.state !== 'stopped').map(async r => {
        try { metrics.set(r.id, summarize((await api('GET', `/runs/${encodeURIComponent(r.id)}/metrics?window=5s`)).keys)); } catch { /* keep the last */ }
      }));
      render();
    } catch (e) { if (e.status !== 401 && e.status !== 0) toast('runs: ' + e.message, true); }
  }

  async function openForm() {
    if (formBox.firstChild) { clear(formBox); return; }
    let sets = [];
    try { sets = await api('GET', '/behavior-sets'); } catch (e) { toast(e.message, true); }
    const latest = new Map();
    for (const s of sets) if (!latest.has(s.name) || latest.get(s.name).version < s.version) latest.set(s.name, s);
    const sel = h('select', { name: 'behavior_set', 'data-field': 'behavior_set', required: true },
      [...latest.values()].map(s => h('option', { value: s.name }, `${s.name} (v${s.version}, ${s.behaviors} behaviors)`)));
    if (!latest.size) sel.append(h('option', { value: '' }, 'no behavior sets: upload one first'));
    const alwaysOn = h('input', { type: 'checkbox', name: 'always_on', checked: true });
    const duration = h('input', { type: 'number', name: 'duration_min', 'data-field': 'duration_secs', min: 0, step: 'any', value: 60, disabled: true });
    alwaysOn.addEventListener('change', () => { duration.disabled = alwaysOn.checked; });
    const f = h('form.grid.panel#run-form', { novalidate: true },
      h('h2.field.wide', { style: 'margin:0' }, 'New run'),
      field('Name', h('input', { name: 'name', 'data-field': 'name', required: true, placeholder: 'checkout herd rehearsal' })),
      field('Behavior set', sel, { hint: 'its latest version' }),
      field('Target API base', h('input', { name: 'api_base', 'data-field': 'target.api_base', placeholder: 'http://127.0.0.1:9090/api' }), { hint: 'needed when the set sends api requests' }),
      field('Websocket URL (optional)', h('input', { name: 'websocket_url', 'data-field': 'target.websocket_url', placeholder: 'from rtm.connect when empty' })),
      field('Websocket subprotocols', h('input', { name: 'websocket_subprotocols', 'data-field': 'target.websocket_subprotocols', placeholder: 'mqtt, graphql-transport-ws' })),
      field('Websocket headers', h('textarea', { name: 'websocket_headers', 'data-field': 'target.websocket_headers', rows: 2, placeholder: 'Authorization: Bearer {{.Token}}' }), { hint: 'one Name: value a line; {{.Index}} {{.Token}} {{.UserID}} per koi' }),
      field('Token template', h('input', { name: 'token', 'data-field': 'target.token', placeholder: 'xoxp-pond-{{.Index}}' }), { hint: '{{.Index}} is the koi number' }),
      field('Koi', h('input', { type: 'number', name: 'koi', 'data-field': 'koi', min: 1, step: 1, value: 100, required: true })),
      field('Ramp (koi per second, 0: all at once)', h('input', { type: 'number', name: 'ramp', 'data-field': 'ramp', min: 0, step: 'any', value: 10 })),
      field('Time scale', h('input', { type: 'number', name: 'time_scale', 'data-field': 'time_scale', min: 0, step: 'any', value: 1 }), { hint: '60: a behavior minute lasts a second' }),
      h('div.field', h('span', 'Duration'), h('label.inline', alwaysOn, 'always-on'), h('label.inline', duration, 'minutes'), h('small.field-error')),
      field('Labels', h('input', { name: 'labels', 'data-field': 'labels', placeholder: 'team=chat, env=staging' })),
      field('Owner (optional)', h('input', { name: 'owner', 'data-field': 'owner', placeholder: 'you' })),
      h('label.field', h('span', 'Start'), h('span.inline', h('input', { type: 'checkbox', name: 'paused' }), 'paused (koi connect, send nothing)')),
      h('div.form-error.field.wide', { hidden: true }),
      h('div.form-actions', h('button.primary', { type: 'submit', 'data-role': 'admin' }, 'Create run'),
        h('button', { type: 'button', onclick: () => clear(formBox) }, 'Cancel')));
    f.addEventListener('submit', async ev => {
      ev.preventDefault();
      const v = n => f.elements[n].value.trim();
      const spec = { name: v('name'), behavior_set: v('behavior_set'), koi: Number(v('koi')), ramp: Number(v('ramp') || 0),
        time_scale: Number(v('time_scale') || 0), target: {} };
      if (v('api_base')) spec.target.api_base = v('api_base');
      if (v('websocket_url')) spec.target.websocket_url = v('websocket_url');
      const protocols = v('websocket_subprotocols').split(',').map(s => s.trim()).filter(Boolean);
      if (protocols.length) spec.target.websocket_subprotocols = protocols;
      const headers = {};
      for (const line of v('websocket_headers').split('\n').map(s => s.trim()).filter(Boolean)) {
        const i = line.indexOf(':');
        if (i < 1) { showFieldError(f, { field: 'target.websocket_headers', message: `“${line}” is not Name: value` }); return; }
        headers[line.slice(0, i).trim()] = line.slice(i + 1).trim();
      }
      if (Object.keys(headers).length) spec.target.websocket_headers = headers;
      if (v('token')) spec.target.token = v('token');
      if (v('owner')) spec.owner = v('owner');
      if (!alwaysOn.checked) spec.duration_secs = Number(duration.value) * 60;
      if (f.elements.paused.checked) spec.paused = true;
      const labels = {};
      for (const part of v('labels').split(',').map(s => s.trim()).filter(Boolean)) {
        const i = part.indexOf('=');
        if (i < 1) { showFieldError(f, { field: 'labels', message: `“${part}” is not key=value` }); return; }
        labels[part.slice(0, i).trim()] = part.slice(i + 1).trim();
      }
      if (Object.keys(labels).length) spec.labels = labels;
      // Check what we can before sending.
      if (!spec.name) return showFieldError(f, { field: 'name', message: 'give the run a name' });
      if (!spec.behavior_set) return showFieldError(f, { field: 'behavior_set', message: 'upload a behavior set first' });
      if (spec.target.api_base && !/^https?:\/\/./.test(spec.target.api_base)) return showFieldError(f, { field: 'target.api_base', message: 'an absolute http(s) URL' });
      if (spec.target.websocket_url && !/^wss?:\/\/./.test(spec.target.websocket_url)) return showFieldError(f, { field: 'target.websocket_url', message: 'an absolute ws(s) URL' });
      if (!Number.isInteger(spec.koi) || spec.koi < 1) return showFieldError(f, { field: 'koi', message: 'a whole number of koi, at least 1' });
      if (!(spec.ramp >= 0)) return showFieldError(f, { field: 'ramp', message: 'koi per second, 0 or more' });
      showFieldError(f, null);
      try {
        const r = await api('POST', '/runs', spec);
        toast(`Run “${r.name}” created.`);
        clear(formBox);
        refresh();
      } catch (e) { showFieldError(f, e); }
    });
    formBox.append(f);
    applyRole(f);
    f.elements.name.focus();
  }

  refresh();
  return { tick: refresh };
}
