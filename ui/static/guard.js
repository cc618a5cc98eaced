// guard.js: a run's live thresholds, guardrails and the actions they took,
// and the partial shutdown (shed) control. run.js mounts it and calls
// render(run) with every refresh of the run view.
import { api, h, toast, fmtTime, fmtMS, showFieldError, applyRole, labelCells } from './lib.js';

/** fmtValue formats an observed value in its unit (ms, fraction, per_sec, count). */
export function fmtValue(v, unit) {
  if (v === null || v === undefined) return '–';
  switch (unit) {
    case 'ms': return fmtMS(v);
    case 'fraction': return (100 * v).toFixed(1) + ' %';
    case 'per_sec': return v.toFixed(2) + '/s';
    default: return String(Math.round(v));
  }
}

const chipClass = { pass: 'ok', ok: 'ok', fail: 'bad', firing: 'bad', no_data: '', arming: '', low_count: 'warn', idle: '' };

function chip(state) {
  const cls = chipClass[state] ?? '';
  return h('span.chip' + (cls ? '.' + cls : ''), { 'data-state': state }, h('span.dot'), state.replace('_', ' '));
}

/** mountGuard returns the guard panel of run id and its render(run). */
export function mountGuard(id, onChange) {
  const shedInfo = h('div.small#shed-info');
  const percent = h('input', { type: 'number', name: 'percent', 'data-field': 'percent', min: 0, max: 99, step: 'any', placeholder: '50' });
  const shedForm = h('form.inline#shed-form', { novalidate: true },
    h('label.field', h('span', 'Shed (% of koi held back)'), percent, h('small.field-error')),
    h('button.primary', { type: 'submit', 'data-role': 'operator', style: 'align-self:flex-end' }, 'Shed'),
    h('button#shed-restore', { type: 'button', 'data-role': 'operator', style: 'align-self:flex-end' }, 'Restore all koi'),
    h('div.form-error', { hidden: true }));
  async function shed(p) {
    try {
      const run = await api('POST', `/runs/${encodeURIComponent(id)}/shed`, { percent: p });
      showFieldError(shedForm, null);
      percent.value = '';
      toast(p ? `Shed ${p}%: ${run.effective_koi} of ${run.koi} koi stay active.` : `Restored: all ${run.koi} koi active.`);
      onChange(run);
    } catch (e) { showFieldError(shedForm, e); }
  }
  shedForm.addEventListener('submit', ev => {
    ev.preventDefault();
    const p = Number(percent.value);
    if (percent.value === '' || !(p >= 0 && p < 100)) return showFieldError(shedForm, { field: 'percent', message: 'a percentage from 0 up to (not including) 100' });
    shed(p);
  });
  shedForm.querySelector('#shed-restore').addEventListener('click', () => shed(0));

  const liveBody = h('tbody');
  const rulesBody = h('tbody');
  const actsBody = h('tbody');
  const capacity = h('div#capacity');
  const el = h('div.panel#guard',
    h('h2', 'Guardrails and live thresholds'),
    h('div.muted.small', 'Thresholds are judged each second over a sliding window; a guardrail acts when its condition holds for its whole window.'),
    shedInfo, shedForm, capacity,
    h('h3', 'Live thresholds'),
    h('div.table-wrap', h('table#live-thresholds', h('thead', h('tr', h('th', 'Key'), h('th', 'Threshold'), h('th', 'Now'),
      h('th.num', 'Observed'), h('th.num', 'Calls'), h('th', 'Failing for'))), liveBody)),
    h('h3', 'Guardrails'),
    h('div.table-wrap', h('table#guardrails', h('thead', h('tr', h('th', 'Rule'), h('th', 'Scope'), h('th', 'Condition'),
      h('th', 'For'), h('th', 'Action'), h('th', 'Now'), h('th.num', 'Observed'), h('th.num', 'Calls'))), rulesBody)),
    h('h3', 'Actions taken'),
    h('div.table-wrap', h('table#guard-actions', h('thead', h('tr', h('th', 'Time'), h('th', 'Rule'), h('th', 'Condition'),
      h('th.num', 'Observed'), h('th', 'Action'), h('th.hide-sm', 'Effect'))), actsBody)));

  function render(run) {
    const active = run.state !== 'stopped';
    shedForm.hidden = !active;
    shedInfo.replaceChildren(run.shed_percent
      ? h('span.chip.warn', { 'data-shed': run.shed_percent }, h('span.dot'), `shed ${run.shed_percent}%: ${run.effective_koi} of ${run.koi} koi active`)
      : h('span.muted', `No shed: all ${run.koi} koi active.`));
    const live = run.live_thresholds_now || [];
    const recorded = run.live_thresholds || [];
    const thresholds = Object.entries(run.thresholds || {}).flatMap(([k, es]) => es.map(e => ({ key: k, expr: e })));
    liveBody.replaceChildren(...(thresholds.length ? thresholds.map(t => {
      const l = live.find(x => x.key === t.key && x.expr.replace(/\s+/g, '') === t.expr.replace(/\s+/g, '')) || { state: active ? 'no_data' : 'idle' };
      const rec = recorded.find(x => x.key === t.key && x.expr.replace(/\s+/g, '') === t.expr.replace(/\s+/g, ''));
      return h('tr', { 'data-key': t.key, 'data-state': l.state }, h('td.mono', t.key), h('td.mono', t.expr), h('td', chip(l.state)),
        h('td.num', fmtValue(l.observed, l.unit)), h('td.num', l.count ?? '–'),
        h('td.small', l.state === 'fail' ? `${Math.round(l.failing_secs || 0)} s` : '',
          rec && rec.failures ? h('span.muted', ` (failed ${rec.failures}× so far, ${Math.round(rec.failed_secs + (l.failing_secs || 0))} s in all)`) : ''));
    }) : [h('tr', h('td.empty', { colspan: 6 }, 'No thresholds on this run.'))]));
    const rules = run.guardrails_now || [];
    const own = run.guardrails || [];
    rulesBody.replaceChildren(...(rules.length ? rules.map(g => h('tr', { 'data-rule': g.name, 'data-state': g.state },
      h('td', g.name), h('td', g.scope), h('td.mono', g.condition), h('td', g.for), h('td', g.action), h('td', chip(g.state)),
      h('td.num', fmtValue(g.observed, g.unit)), h('td.num', String(g.count))))
      : own.length ? own.map(g => h('tr', { 'data-rule': g.name, 'data-state': 'idle' }, h('td', g.name), h('td', 'run'),
        h('td.mono', `${g.when} of ${g.key}`), h('td', g.for), h('td', g.action), h('td', chip('idle')), h('td.num', '–'), h('td.num', '–')))
        : [h('tr', h('td.empty', { colspan: 8 }, 'No guardrails apply to this run.'))]));
    const acts = [...(run.guard_actions || [])].reverse();
    actsBody.replaceChildren(...(acts.length ? acts.map(a => h('tr', { 'data-action': a.action },
      h('td', fmtTime(a.at)), h('td', `${a.rule} (${a.scope})`), h('td.mono', a.condition),
      h('td.num', `${fmtValue(a.observed, a.unit)} over ${a.count}`), h('td', h('span.chip.bad', a.action)), h('td.hide-sm.small', a.detail || '')))
      : [h('tr', h('td.empty', { colspan: 6 }, 'No guardrail has acted on this run.'))]));
    const c = run.capacity_result;
    capacity.replaceChildren(...(c ? [h('h3', 'Capacity search'),
      h('div.small', { 'data-sustained': c.sustained, 'data-done': c.done ? 'yes' : 'no' },
        c.done ? `${c.sustained} koi sustained — ${c.reason}` : `searching: ${run.koi} koi now, ${c.sustained} sustained so far`),
      h('div.table-wrap', h('table#capacity-steps', h('thead', h('tr', h('th.num', 'Koi'), h('th', 'Held'), h('th.num', 'Rate'),
        h('th.num', 'Errors'), h('th.num', 'p95'), h('th.hide-sm', 'Why not'))),
        h('tbody', ...(c.steps || []).map(st => h('tr', h('td.num', String(st.koi)), h('td', chip(st.held ? 'ok' : 'fail')),
          h('td.num', st.rate_per_sec.toFixed(1) + '/s'), h('td.num', fmtValue(st.error_rate, 'fraction')), h('td.num', fmtMS(st.p95_ms)),
          h('td.hide-sm.small', st.reason || ''))))))] : []));
    for (const t of el.querySelectorAll('table')) labelCells(t);
    applyRole(el);
  }
  return { el, render };
}
