// formations.js: formations list, source editor with validator errors at
// their lines, and the launch dialog (run, parameters, start time,
// countdown, then progress per school and step latencies).
import { api, h, toast, fmtTime, fmtMS, fmtNum, fmtUTC, keeperNow, stateChip, parseDiags, showFieldError, field, applyRole, isZeroTime, live } from './lib.js';
import { Editor } from './editor.js';

const TEMPLATE = `{
  "name": "announcement-herd",
  "begin_within_secs": 60,
  "percent": 10,
  "sequence": {
    "steps": [
      {
        "request": {
          "type": "api",
          "method": "conversations.history",
          "args": { "channel": "{{ get \\"channel_id\\" }}", "limit": "20" }
        }
      }
    ]
  }
}
`;

function latestByName(list) {
  const m = new Map();
  for (const f of list) {
    const cur = m.get(f.name);
    if (!cur || cur.version < f.version) m.set(f.name, { ...f, versions: (cur ? cur.versions : 0) + 1 });
    else cur.versions++;
  }
  return [...m.values()].sort((a, b) => a.name.localeCompare(b.name));
}

export function mount(main, hash) {
  const listEl = h('ul.list#formation-list');
  const detail = h('div#formation-detail');
  main.append(h('div.page-head', h('div.grow', h('h1', 'Formations'),
    h('div.muted.small', 'Synchronized herds: a percent of connected koi start a sequence within a window of the launch instant.')),
  h('a', { href: '#/formations/new' }, h('button.primary', { type: 'button', 'data-role': 'admin', tabindex: -1 }, 'New formation'))),
  h('div.split', listEl, detail));

  let all = [];
  async function loadList() {
    try { all = await api('GET', '/formations'); } catch (e) { toast('formations: ' + e.message, true); return; }
    const items = latestByName(all);
    listEl.replaceChildren(...(items.length ? items.map(f => h('li', h('a', { href: '#/formations/' + f.hash, class: f.hash === hash || (all.find(x => x.hash === hash) || {}).name === f.name ? 'active' : null, 'data-name': f.name },
      h('div', h('b', f.name), ` v${f.version}`), h('div.sub', `${f.percent}% within ${f.begin_within_ms / 1000} s · ${f.steps} step${f.steps === 1 ? '' : 's'}` + (f.versions > 1 ? ` · ${f.versions} versions` : '')))))
      : [h('li', h('div.empty', 'No formations yet.'))]));
    return all;
  }

  async function show() {
    await loadList();
    let f = null;
    if (hash && hash !== 'new') f = all.find(x => x.hash === hash) || all.find(x => x.name === hash);
    if (!f && hash !== 'new') {
      const first = latestByName(all)[0];
      if (first) { location.replace('#/formations/' + first.hash); return; }
    }
    const ed = new Editor(f ? f.file.content : TEMPLATE, { label: 'Formation source' });
    const fileName = h('input', { name: 'filename', 'data-field': 'file.name', value: f ? f.file.name : 'formation.json' });
    const form = h('form#formation-form', { novalidate: true },
      h('div.inline', field('File name', fileName), h('div.form-error', { hidden: true })),
      ed.el,
      h('div.form-actions', { style: 'margin-top:.6rem' },
        h('button.primary', { type: 'submit', 'data-role': 'admin' }, f ? 'Save as new version' : 'Upload formation'),
        f ? h('button#launch-open', { type: 'button', 'data-role': 'operator', onclick: () => launchDialog(f) }, 'Launch…') : null,
        h('span.muted.small', 'Validated by the keeper; errors show at their lines.')));
    form.addEventListener('submit', async ev => {
      ev.preventDefault();
      showFieldError(form, null);
      ed.setDiags([]);
      try {
        JSON.parse(ed.value);
      } catch (e) { /* the keeper says where; it reads JSON with comments too */ }
      try {
        const saved = await api('POST', '/formations', { file: { name: fileName.value.trim(), content: ed.value } });
        toast(`Saved ${saved.name} v${saved.version}.`);
        location.hash = '#/formations/' + saved.hash;
      } catch (e) {
        const diags = e.field === 'file' ? parseDiags(e.message) : [];
        if (diags.length) ed.setDiags(diags); else showFieldError(form, e);
      }
    });
    detail.replaceChildren(
      f ? h('div.panel', h('h2', `${f.name} `, h('span.muted', `v${f.version}`)),
        h('div.muted.small', `${f.percent}% of connected koi, each starting within ${f.begin_within_ms / 1000} s of the launch · ${f.steps} steps · uploaded ${fmtTime(f.created_at)}${f.created_by ? ' by ' + f.created_by : ''} · `, h('span.mono', f.hash.slice(0, 12))),
        (f.params || []).length ? h('div.small#formation-params', 'Launch parameters: ',
          f.params.map((p, i) => [i ? ' · ' : '', h('span.mono', p.name), p.required ? h('span.required', ' (required)') : p.default ? ` (default ${p.default})` : '', p.doc ? ` — ${p.doc}` : ''])) : null)
        : h('div.panel', h('h2', 'New formation'), h('div.muted.small', 'Paste or write a formation file; launch parameters are read with get.')),
      form);
    applyRole(detail);
  }

  show();
  return {};
}

// --- the launch dialog

function toLocalInput(ms) {
  const d = new Date(ms);
  const p = n => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export async function launchDialog(f) {
  let runs = [];
  try { runs = (await api('GET', '/runs')).filter(r => r.state !== 'stopped'); } catch (e) { toast(e.message, true); return; }
  const dlg = h('dialog.dialog#launch-dialog', { 'aria-labelledby': 'launch-title' });
  document.body.append(dlg);
  const close = () => { dlg.close(); };
  dlg.addEventListener('close', () => { clearInterval(dlg.timer); dlg.remove(); });

  const runSel = h('select', { name: 'run', 'data-field': 'run' }, runs.map(r => h('option', { value: r.id },
    `${r.name} — ${(r.koi_now && r.koi_now.connected) || 0} koi connected`)));
  // A field per declared parameter; a formation that declares none gets
  // the free key=value list (any parameters, as before declarations).
  const declared = f.params || [];
  const params = declared.length ? null : h('textarea', { name: 'params', 'data-field': 'params', rows: 3, placeholder: 'channel_id=C0123\none per line, key=value' });
  const paramInputs = declared.map(p => h('input', { type: 'text', name: 'param-' + p.name, 'data-field': 'param-' + p.name, 'data-param': p.name,
    required: !!p.required, 'aria-required': p.required ? 'true' : 'false', placeholder: p.default ? `default: ${p.default}` : (p.required ? 'required' : 'optional') }));
  const paramFields = declared.length
    ? declared.map((p, i) => field(h('span', p.name, p.required ? h('span.required', { title: 'required' }, ' *') : null), paramInputs[i],
      { hint: (p.doc || '') + (p.default ? ` (default ${p.default})` : '') + (p.required ? ' · required' : '') }))
    : [field('Parameters', params, { hint: 'readable in the formation with get "key"' })];
  const when = h('input', { type: 'datetime-local', name: 'at', 'data-field': 'at', step: 1, value: toLocalInput(Date.now() + 60000) });
  const mode = v => h('input', { type: 'radio', name: 'mode', value: v, checked: v === 'now' });
  const modeNow = mode('now'), modeAt = mode('at');
  const utc = h('div.small.muted#launch-utc');
  const showUTC = () => {
    if (modeNow.checked) { utc.textContent = 'Starts about three poll intervals from now, so every school hears of it first.'; return; }
    const local = new Date(when.value).getTime();
    if (Number.isNaN(local)) { utc.textContent = 'Pick a date and time.'; return; }
    const off = live.offsetMS;
    utc.textContent = `${new Date(local).toLocaleString([], { hour12: false })} local = ${fmtUTC(local)}` +
      (Math.abs(off) > 500 ? ` · the keeper's clock is ${(off / 1000).toFixed(1)} s ${off > 0 ? 'ahead of' : 'behind'} this browser` : ' · keeper clock agrees with this browser') +
      ` · in ${Math.round((local - Date.now()) / 1000)} s`;
  };
  when.addEventListener('input', () => { modeAt.checked = true; showUTC(); });
  modeNow.addEventListener('change', showUTC); modeAt.addEventListener('change', showUTC);
  const form = h('form#launch-form', { novalidate: true },
    h('h2#launch-title', `Launch ${f.name} `, h('span.muted', `v${f.version}`)),
    h('p.muted.small', `${f.percent}% of the run's connected koi each start the sequence at a random moment within ${f.begin_within_ms / 1000} s of the start.`),
    h('div', { style: 'display:grid;gap:.7rem' },
      field('Run', runSel),
      ...paramFields,
      h('fieldset', h('legend', 'Start'),
        h('label.inline', modeNow, 'now'),
        h('label.inline', modeAt, 'at', when),
        utc, h('small.field-error'))),
    h('div.form-error', { hidden: true }),
    h('div.dialog-buttons', h('button', { type: 'button', onclick: close }, 'Cancel'),
      h('button.primary#launch-go', { type: 'submit', 'data-role': 'operator', disabled: !runs.length }, 'Launch')));
  if (!runs.length) form.querySelector('.form-error').hidden = false, form.querySelector('.form-error').textContent = 'No running run to launch on: create a run first.';
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    const body = { formation: f.hash, run: runSel.value };
    const p = {};
    for (const [i, d] of declared.entries()) {
      const v = paramInputs[i].value.trim();
      if (v) p[d.name] = v;
      else if (d.required) return showFieldError(form, { field: 'param-' + d.name, message: `${d.name} is required${d.doc ? ': ' + d.doc : ''}` });
    }
    for (const line of (params ? params.value : '').split('\n').map(s => s.trim()).filter(Boolean)) {
      const i = line.indexOf('=');
      if (i < 1) return showFieldError(form, { field: 'params', message: `“${line}” is not key=value` });
      p[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
    if (Object.keys(p).length) body.params = p;
    if (modeAt.checked) {
      const t = new Date(when.value).getTime();
      if (Number.isNaN(t)) return showFieldError(form, { field: 'at', message: 'pick a date and time' });
      if (t < Date.now() - 4000) return showFieldError(form, { field: 'at', message: 'that time has passed' });
      body.at = new Date(t).toISOString();
    }
    showFieldError(form, null);
    try {
      const l = await api('POST', '/launches', body);
      progress(dlg, l, f, runSel.selectedOptions[0] ? runs.find(r => r.id === runSel.value).name : l.run);
    } catch (e) {
      // the keeper names the parameter; point at its field when there is one
      const head = (e.message || '').split('; it declares')[0]; // what is wrong, before the declared list
      const words = head.split(/[^A-Za-z0-9_.-]+/);
      const named = e.field && e.field.startsWith('params') && declared.find(d => words.includes(d.name));
      showFieldError(form, !e.field || !e.field.startsWith('params') ? e : named ? { ...e, field: 'param-' + named.name } : params ? { ...e, field: 'params' } : e);
    }
  });
  dlg.append(form);
  applyRole(dlg);
  showUTC();
  dlg.timer = setInterval(() => { if (dlg.isConnected && modeAt.checked) showUTC(); }, 1000);
  dlg.showModal();
}

function progress(dlg, l, f, runName) {
  clearInterval(dlg.timer);
  const count = h('div.countdown#launch-countdown');
  const summary = h('div#launch-summary', { style: 'text-align:center' });
  const shares = h('tbody');
  const steps = h('tbody');
  const cancel = h('button#launch-cancel', { type: 'button', 'data-role': 'operator' }, 'Cancel launch');
  cancel.addEventListener('click', async () => {
    try { l = await api('POST', `/launches/${l.id}/cancel`); render(); } catch (e) { toast(e.message, true); }
  });
  dlg.replaceChildren(h('h2', `${f.name} on “${runName}”`), h('div.muted.small', `Launch ${l.id} · start ${fmtTime(l.start)} local = ${fmtUTC(Date.parse(l.start))}`),
    count, summary,
    h('h3', 'Koi per school'),
    h('div.table-wrap', h('table#launch-shares', h('thead', h('tr', h('th', 'School'), h('th.num', 'Planned'), h('th.num', 'Started'),
      h('th.num', 'Finished'), h('th.num', 'Failed'), h('th.num', 'Cancelled'), h('th', ''))), shares)),
    h('h3', 'Step latencies'),
    h('div.table-wrap', h('table#launch-steps', h('thead', h('tr', h('th', 'Key'), h('th.num', 'Count'), h('th.num', 'Errors'), h('th.num', 'p50'), h('th.num', 'p95'))), steps)),
    h('div.dialog-buttons', cancel, h('button.primary#launch-close', { type: 'button', onclick: () => dlg.close() }, 'Close')));
  applyRole(dlg);
  let metricKeys = [];
  function render() {
    const start = Date.parse(l.start);
    const left = start - keeperNow();
    count.classList.toggle('go', left <= 0);
    count.textContent = left > 0 ? `T − ${(left / 1000).toFixed(left < 10000 ? 1 : 0)} s` : l.state === 'done' ? 'Done' : l.state === 'cancelled' ? 'Cancelled' : 'Go';
    summary.replaceChildren(...[stateChip(l.state), ' ',
      isZeroTime(l.planned_at) ? h('span.muted', 'the per-school plan is fixed shortly before the start')
        : h('span#launch-started', { 'data-started': l.started, 'data-count': l.count, 'data-finished': l.finished, 'data-failed': l.failed, 'data-cancelled': l.cancelled },
          `${l.count} planned (${l.connected} connected when planned): ${l.started} started, ${l.finished} finished, ${l.failed} failed, ${l.cancelled} cancelled`),
      l.outcome ? h('div.small.muted', l.outcome) : null].filter(Boolean));
    // the bar: how many of the school's koi have ended (finished, failed or cancelled)
    const ended = s => (s.finished || 0) + (s.failed || 0) + (s.cancelled || 0);
    shares.replaceChildren(...((l.shares || []).length ? l.shares.map(s => h('tr', h('td', s.school), h('td.num', String(s.count)), h('td.num', String(s.started)),
      h('td.num', String(s.finished || 0)), h('td.num', String(s.failed || 0)), h('td.num', String(s.cancelled || 0)),
      h('td', h('div.progress', h('span', { style: `width:${s.count ? Math.min(100, 100 * ended(s) / s.count) : (s.reported ? 100 : 0)}%` })), s.error ? h('div.small', { style: 'color:var(--bad)' }, s.error) : null)))
      : [h('tr', h('td.empty', { colspan: 7 }, 'planned two polls before the start'))]));
    steps.replaceChildren(...(metricKeys.length ? metricKeys.map(k => h('tr', h('td.mono', k.key), h('td.num', fmtNum(k.count)), h('td.num', fmtNum(k.failures)), h('td.num', fmtMS(k.p50_ms)), h('td.num', fmtMS(k.p95_ms))))
      : [h('tr', h('td.empty', { colspan: 5 }, 'no steps yet'))]));
    cancel.disabled = !(l.state === 'pending' || l.state === 'running');
    applyRole(dlg);
  }
  async function poll() {
    try {
      // the launch view carries its own step keys (this launch only)
      l = await api('GET', `/launches/${l.id}`);
      metricKeys = (l.metrics && l.metrics.keys) || [];
    } catch (e) { /* the header shows reachability */ }
    render();
  }
  render();
  poll();
  dlg.timer = setInterval(() => { render(); }, 200);
  dlg.timer2 = setInterval(poll, 1000);
  dlg.addEventListener('close', () => clearInterval(dlg.timer2));
}
