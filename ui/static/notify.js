// notify.js: the Notifications page. Webhooks with their delivery status
// (last success, last error in red, counts), a form to add one, a Test
// and a Remove button per webhook; below, the event triggers with their
// accepted and refused calls (admins only: reading triggers needs admin).
import { api, h, clear, toast, applyRole, ago, fmtTime, isZeroTime, field, showFieldError, labelCells, allowed } from './lib.js';

const REFRESH_MS = 2000;

// parseList splits "a, b" into ["a", "b"].
function parseList(s) { return s.split(',').map(x => x.trim()).filter(Boolean); }

// parseLabels parses "k=v, k=v" or returns the part that is not k=v.
function parseLabels(s) {
  const out = {};
  for (const part of parseList(s)) {
    const i = part.indexOf('=');
    if (i < 1) return { bad: part };
    out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return { labels: out };
}

export function mount(main) {
  const hookBody = h('tbody');
  const trigBody = h('tbody');
  const formBox = h('div');
  let timer = 0;
  let alive = true;
  const results = new Map(); // webhook → {text, bad}: the last Test outcome, kept across refreshes

  main.append(
    h('div.page-head', h('div.grow', h('h1', 'Notifications'),
      h('div.muted.small', 'Webhooks hear of runs starting, pausing, stopping and ending (with the threshold verdict), switch changes, guardrail actions and trigger calls. Deliveries are retried with backoff; a failing receiver never delays the switch.')),
    h('div.actions', h('button.primary#new-webhook', { 'data-role': 'admin', onclick: () => showForm() }, 'Add webhook'))),
    formBox,
    h('h2', 'Webhooks'),
    h('div.table-wrap', h('table#webhooks-table', h('thead', h('tr', h('th', 'Name'), h('th', 'Format'), h('th', 'Kinds'),
      h('th', 'URL'), h('th.num', 'Delivered'), h('th.num', 'Failed'), h('th.num', 'Dropped'), h('th.num', 'Queued'),
      h('th', 'Last success'), h('th', 'Last error'), h('th', ''))), hookBody)),
    h('h2', 'Event triggers'),
    h('div.muted.small', 'POST /api/v1/triggers/NAME, signed with X-Koipond-Timestamp and X-Koipond-Signature (koipond trigger fire NAME … signs for you).'),
    h('div.table-wrap', h('table#triggers-table', h('thead', h('tr', h('th', 'Name'), h('th', 'Actions'), h('th.num', 'Accepted'),
      h('th', 'Refused'), h('th', 'Updated'))), trigBody)));

  function hookRow(w) {
    const s = w.status || {};
    const r = results.get(w.name);
    const result = h('div.small' + (r ? '' : '.muted'), { id: 'test-result-' + w.name, style: r && r.bad ? 'color:var(--bad)' : '' }, r ? r.text : '');
    const test = h('button', { 'data-role': 'admin', 'data-test': w.name, onclick: async () => {
      test.disabled = true;
      try {
        const a = await api('POST', `/webhooks/${encodeURIComponent(w.name)}/test`);
        results.set(w.name, { text: a.result === 'delivered' ? `test delivered: HTTP ${a.status}` : `test failed: ${a.error}`, bad: a.result !== 'delivered' });
        toast(a.result === 'delivered' ? `Test notice delivered to ${w.name}.` : `Test notice to ${w.name} failed: ${a.error}`, a.result !== 'delivered');
        refresh();
      } catch (e) { toast(`Could not test ${w.name}: ${e.message}`, true); }
      finally { test.disabled = false; }
    } }, 'Test');
    const rm = h('button', { 'data-role': 'admin', 'data-remove': w.name, onclick: async () => {
      if (rm.dataset.armed !== 'yes') { rm.dataset.armed = 'yes'; rm.textContent = 'Really remove?'; rm.classList.add('danger'); return; }
      try {
        await api('DELETE', `/webhooks/${encodeURIComponent(w.name)}`);
        toast(`Webhook ${w.name} removed.`);
        refresh();
      } catch (e) { toast(`Could not remove ${w.name}: ${e.message}`, true); }
    } }, 'Remove');
    return h('tr', { 'data-webhook': w.name },
      h('td', h('b', w.name), w.signed ? h('div.small.muted', 'signed') : null,
        w.labels && Object.keys(w.labels).length ? h('div.small.muted', 'runs with ' + Object.entries(w.labels).map(([k, v]) => `${k}=${v}`).join(', ')) : null),
      h('td', w.format),
      h('td.small', (w.kinds || []).length ? w.kinds.join(', ') : 'all'),
      h('td.small', { style: 'word-break:break-all' }, w.url),
      h('td.num.delivered', String(s.delivered || 0)),
      h('td.num.failed', { style: s.failed ? 'color:var(--bad);font-weight:600' : '' }, String(s.failed || 0)),
      h('td.num.dropped', { style: s.dropped ? 'color:var(--warn);font-weight:600' : '' }, String(s.dropped || 0)),
      h('td.num', String(s.queued || 0)),
      h('td.last-success', isZeroTime(s.last_success) ? h('span.muted', 'never') : [ago(s.last_success), h('div.muted.small', fmtTime(s.last_success))]),
      h('td.last-error', s.last_error ? [h('span', { style: 'color:var(--bad)' }, s.last_error), h('div.muted.small', fmtTime(s.last_error_at))] : h('span.muted', '–')),
      h('td', h('div.actions', test, rm), result));
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const hooks = await api('GET', '/webhooks');
      if (!alive) return;
      const rows = hooks.map(hookRow);
      if (!rows.length) rows.push(h('tr', h('td.empty', { colspan: 11 }, 'No webhooks. Add one to hear of runs and switch changes in Slack or any HTTP endpoint.')));
      hookBody.replaceChildren(...rows);
      labelCells(hookBody.closest('table'));
      applyRole(hookBody);
    } catch (e) {
      if (alive) hookBody.replaceChildren(h('tr', h('td.empty', { colspan: 11 }, `Could not load webhooks: ${e.message}`)));
    }
    if (allowed('admin')) {
      try {
        const trs = await api('GET', '/triggers');
        if (!alive) return;
        const rows = trs.map(t => h('tr', { 'data-trigger': t.name }, h('td', h('b', t.name)),
          h('td.small', t.actions.map((a, i) => `${i}: ${a.run ? 'run' : 'launch ' + a.launch.formation}` +
            (a.match && Object.keys(a.match).length ? ' when ' + Object.entries(a.match).map(([k, v]) => `${k}=${v}`).join(',') : '')).join('; ')),
          h('td.num', String(t.accepted)),
          h('td.small', { style: Object.keys(t.refused || {}).length ? 'color:var(--bad)' : '' },
            Object.entries(t.refused || {}).map(([r, n]) => `${r}: ${n}`).join(', ') || '–'),
          h('td.small', fmtTime(t.updated_at))));
        if (!rows.length) rows.push(h('tr', h('td.empty', { colspan: 5 }, 'No triggers. Add one with koipond trigger add NAME --file SPEC.json --secret-file F.')));
        trigBody.replaceChildren(...rows);
        labelCells(trigBody.closest('table'));
      } catch (e) {
        if (alive) trigBody.replaceChildren(h('tr', h('td.empty', { colspan: 5 }, `Could not load triggers: ${e.message}`)));
      }
    } else {
      trigBody.replaceChildren(h('tr', h('td.empty', { colspan: 5 }, 'Reading triggers needs an admin token.')));
    }
    if (alive) timer = setTimeout(refresh, REFRESH_MS);
  }

  function showForm() {
    clear(formBox);
    const f = h('form.grid.panel#webhook-form', { novalidate: true },
      h('h2.field.wide', { style: 'margin:0' }, 'New webhook'),
      field('Name', h('input', { name: 'name', 'data-field': 'name', required: true, placeholder: 'search-team-slack' })),
      field('URL', h('input', { name: 'url', 'data-field': 'url', required: true, placeholder: 'https://hooks.example.com/…' })),
      field('Format', h('select', { name: 'format', 'data-field': 'format' },
        h('option', { value: 'json' }, 'JSON (the notice)'), h('option', { value: 'slack' }, 'Slack incoming webhook'))),
      field('Kinds', h('input', { name: 'kinds', 'data-field': 'kinds', placeholder: 'run.*, guardrail.fired' }), { hint: 'empty: every kind; globs allowed' }),
      field('Only runs labelled', h('input', { name: 'labels', 'data-field': 'labels', placeholder: 'team=search' })),
      field('Secret (optional)', h('input', { name: 'secret', type: 'password', 'data-field': 'secret', autocomplete: 'new-password' }), { hint: 'signs each delivery; never shown again' }),
      h('div.form-error.field.wide', { hidden: true }),
      h('div.form-actions', h('button.primary', { type: 'submit', 'data-role': 'admin' }, 'Add webhook'),
        h('button', { type: 'button', onclick: () => clear(formBox) }, 'Cancel')));
    f.addEventListener('submit', async ev => {
      ev.preventDefault();
      const v = n => f.elements[n].value.trim();
      const spec = { name: v('name'), url: v('url'), format: v('format') };
      const kinds = parseList(v('kinds'));
      if (kinds.length) spec.kinds = kinds;
      const l = parseLabels(v('labels'));
      if (l.bad) return showFieldError(f, { field: 'labels', message: `“${l.bad}” is not key=value` });
      if (Object.keys(l.labels).length) spec.labels = l.labels;
      if (f.elements.secret.value) spec.secret = f.elements.secret.value;
      if (!spec.name) return showFieldError(f, { field: 'name', message: 'give the webhook a name' });
      if (!/^https?:\/\/./.test(spec.url)) return showFieldError(f, { field: 'url', message: 'an absolute http(s) URL' });
      showFieldError(f, null);
      try {
        await api('POST', '/webhooks', spec);
        toast(`Webhook ${spec.name} added.`);
        clear(formBox);
        refresh();
      } catch (e) {
        // kinds[1] → the kinds field.
        showFieldError(f, e.field && e.field.startsWith('kinds[') ? Object.assign(e, { field: 'kinds', message: `${e.field}: ${e.message}` }) : e);
      }
    });
    formBox.append(f);
    applyRole(f);
    f.elements.name.focus();
  }

  refresh();
  return { destroy() { alive = false; clearTimeout(timer); } };
}
