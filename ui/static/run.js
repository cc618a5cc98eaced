// run.js: one run, live: koi, live edit of koi and ramp, charts of
// requests, errors, latency, websockets and event fan-out, launches, and
// the fidelity verdict so far.
import { api, h, toast, fmtTime, fmtRate, fmtPct, fmtMS, fmtNum, stateChip, summarize, isRequestKey, targetText, showFieldError, applyRole, isZeroTime, labelCells } from './lib.js';
import { Chart } from './chart.js';
import { fidelityPanel } from './fidelity.js';
import { runActions, koiCell, elapsed } from './runs.js';
import { mountGuard } from './guard.js';

const WINDOW = '5s';
const WINDOW_S = 5;

function shortKey(k) { return k.replace(/^(api|http):/, ''); }

// topReason is a key's most frequent failure reason as a cell: the reason
// and its count, the sample on hover (reasons and samples are bounded,
// printable text the schools escaped; h sets them as text).
function topReason(x) {
  const r = (x.reasons || [])[0];
  if (!r) return h('td.small.reason', '');
  return h('td.small.reason', { 'data-reason': r.reason, title: r.sample || '' }, h('span.mono', r.reason), h('span.muted', ` ×${fmtNum(r.count)}`));
}

export function mount(main, id) {
  let run = null, lastState = '';
  const title = h('h1', id);
  const chip = h('span');
  const meta = h('div.muted.small');
  const actions = h('div.inline');
  // Ended runs get the link among their actions (runActions).
  const reportLink = h('a#report-link', { href: `#/runs/${encodeURIComponent(id)}/report` }, 'Report');
  const stats = h('div.stats');
  const fidelityBox = h('div');
  // Set when the keeper paused the run for its schools' failures.
  const quarantine = h('div.banner.warn#quarantine', { hidden: true, role: 'status' });
  const koiInput = h('input', { type: 'number', name: 'koi', 'data-field': 'koi', min: 1, step: 1 });
  const rampInput = h('input', { type: 'number', name: 'ramp', 'data-field': 'ramp', min: 0, step: 'any' });
  const edit = h('form.inline#run-edit', { novalidate: true },
    h('label.field', h('span', 'Koi'), koiInput, h('small.field-error')),
    h('label.field', h('span', 'Ramp (koi/s)'), rampInput, h('small.field-error')),
    h('button.primary', { type: 'submit', 'data-role': 'admin', style: 'align-self:flex-end' }, 'Apply'),
    h('div.form-error', { hidden: true }));
  edit.addEventListener('submit', async ev => {
    ev.preventDefault();
    const p = {};
    if (koiInput.value !== '' && Number(koiInput.value) !== run.koi) p.koi = Number(koiInput.value);
    if (rampInput.value !== '' && Number(rampInput.value) !== run.ramp) p.ramp = Number(rampInput.value);
    if (!Object.keys(p).length) return showFieldError(edit, { field: 'koi', message: 'change koi or ramp first' });
    if (p.koi !== undefined && (!Number.isInteger(p.koi) || p.koi < 1)) return showFieldError(edit, { field: 'koi', message: 'a whole number, at least 1' });
    showFieldError(edit, null);
    try {
      run = await api('PATCH', `/runs/${encodeURIComponent(id)}`, p);
      toast(`Now ${run.koi} koi at ${fmtRate(run.ramp)}/s.`);
      koiInput.value = run.koi; rampInput.value = run.ramp;
      render();
    } catch (e) { showFieldError(edit, e); }
  });

  const guard = mountGuard(id, r => { run = r; render(); });
  const schoolsBody = h('tbody');
  const methodsBody = h('tbody');
  const launchesBody = h('tbody');

  const cReq = new Chart('Requests per second, by method', { unit: 'req/s' });
  const cErr = new Chart('Errors per second, by method', { unit: 'err/s' });
  const cLat = new Chart('Latency', { unit: 'ms' });
  const latSel = h('select', { 'aria-label': 'method for the latency chart' }, h('option', { value: '' }, 'slowest method'));
  latSel.addEventListener('change', () => cLat.reset());
  cLat.head.append(latSel);
  const cKoi = new Chart('Koi websockets', { unit: 'koi' });
  const cWS = new Chart('Websocket connects and drops per second', { unit: '/s' });
  const cEv = new Chart('Event fan-out delay (p95, send → koi)', { unit: 'ms', empty: 'no websocket events with a send time yet' });

  main.append(
    h('div.page-head', h('div.grow', h('div.small', h('a', { href: '#/runs' }, '← Runs')), h('div.inline', title, chip), meta),
      reportLink, actions),
    quarantine,
    stats,
    fidelityBox,
    h('div.panel', h('h2', 'Size'), h('div.muted.small', 'Changes apply live: schools move to the new koi count at the ramp rate.'), edit),
    guard.el,
    h('div.charts#charts', cReq.el, cErr.el, cLat.el, cKoi.el, cWS.el, cEv.el),
    h('h2', 'Methods (last 5 s)'),
    h('div.table-wrap', h('table#methods', h('thead', h('tr', h('th', 'Key'), h('th.num', 'Req/s'), h('th.num', 'Errors'),
      h('th.num', 'p50'), h('th.num', 'p95'), h('th.num', 'p99'), h('th.hide-sm', 'Outcomes'), h('th', 'Top failure reason'))), methodsBody)),
    h('h2', 'Launches'),
    h('div.table-wrap', h('table#launches', h('thead', h('tr', h('th', 'State'), h('th', 'Formation'), h('th', 'Start'),
      h('th.num', 'Started / planned'), h('th', 'Per school'), h('th.hide-sm', 'Outcome'))), launchesBody)),
    h('h2', 'Schools'),
    h('div.table-wrap', h('table', h('thead', h('tr', h('th', 'School'), h('th', 'Koi range'), h('th.num', 'Koi'), h('th.num', 'Ramp'))), schoolsBody)));

  function render() {
    if (!run) return;
    title.textContent = run.name;
    chip.replaceChildren(stateChip(run.state));
    meta.replaceChildren(h('span.mono', run.id), ` · owner ${run.owner || '–'} · behavior set `,
      h('a', { href: '#/behaviors/' + encodeURIComponent(run.behavior_set) }, run.behavior_set.slice(0, 12)),
      ` · target ${targetText(run.target)} · started ${fmtTime(run.started_at)} · ${elapsed(run)}`,
      run.time_scale && run.time_scale !== 1 ? ` · time ×${run.time_scale}` : '',
      ...Object.entries(run.labels || {}).flatMap(([k, v]) => [' ', h('span.label-tag', `${k}=${v}`)]));
    if (run.state !== lastState) {
      actions.replaceChildren(...runActions(run, refresh));
      reportLink.hidden = run.state === 'stopped';
      edit.hidden = run.state === 'stopped';
      lastState = run.state;
      applyRole(actions);
    }
    const q = run.quarantine;
    quarantine.hidden = !(q && q.reason);
    if (q && q.reason) {
      quarantine.replaceChildren(h('strong', 'Quarantined by the keeper: '), q.reason,
        h('div.small', `${(q.failures || []).length} school failures since ${fmtTime(q.failures && q.failures.length ? q.failures[0].at : q.at)}. `,
          'Resume the run once the cause is fixed; resuming clears the count.'));
    }
    if (koiInput.value === '' && document.activeElement !== koiInput) koiInput.value = run.koi;
    if (rampInput.value === '' && document.activeElement !== rampInput) rampInput.value = run.ramp;
    // Only GET /runs/:id carries the verdict: keep the last one through
    // answers without it (a switch or a size change).
    if (run.fidelity) fidelityBox.replaceChildren(fidelityPanel(run.fidelity));
    guard.render(run);
    schoolsBody.replaceChildren(...(run.assignments.length ? run.assignments.map(a => h('tr', h('td', a.school),
      h('td.mono', `${a.from} – ${a.to - 1}`), h('td.num', String(a.to - a.from)), h('td.num', fmtRate(a.ramp) + '/s')))
      : [h('tr', h('td.empty', { colspan: 4 }, run.state === 'stopped' ? 'The run is over; its koi are gone.' : 'No school holds koi of this run yet.'))]));
  }

  function renderMetrics(m) {
    const now = Date.now();
    const keys = m.keys || [];
    const s = summarize(keys);
    const api = keys.filter(k => isRequestKey(k.key));
    const k = run.koi_now || {};
    stats.replaceChildren(
      h('div.stat', h('div.k', 'Koi connected'), h('div.v#stat-koi', `${k.connected || 0} / ${run.effective_koi ?? run.koi}`)),
      h('div.stat', h('div.k', 'Requests/s'), h('div.v#stat-rps', fmtRate(s.rate))),
      h('div.stat', h('div.k', 'Errors'), h('div.v', fmtPct(s.errPct))),
      h('div.stat', h('div.k', 'p95 (slowest)'), h('div.v', fmtMS(s.p95))),
      h('div.stat', h('div.k', 'Websocket frames in'), h('div.v', fmtNum(m.traffic_total ? m.traffic_total.frames_in : 0))),
      h('div.stat', h('div.k', 'Booting / reconnecting'), h('div.v', `${k.booting || 0} / ${k.reconnecting || 0}`)));
    const req = {}, err = {};
    for (const x of api) { req[shortKey(x.key)] = x.rate_per_sec; err[shortKey(x.key)] = x.failures / WINDOW_S; }
    cReq.push(now, req);
    cErr.push(now, err);
    // Latency: one method's p50/p95/p99.
    const names = api.filter(x => x.p95_ms != null).map(x => x.key);
    const have = new Set([...latSel.options].map(o => o.value));
    for (const n of names) if (!have.has(n)) latSel.append(h('option', { value: n }, shortKey(n)));
    let pick = latSel.value ? api.find(x => x.key === latSel.value) : null;
    if (!latSel.value) for (const x of api) if (x.p95_ms != null && (!pick || x.p95_ms > pick.p95_ms)) pick = x;
    if (pick) cLat.push(now, { p50: pick.p50_ms, p95: pick.p95_ms, p99: pick.p99_ms });
    else cLat.push(now, {});
    cKoi.push(now, { connected: k.connected || 0, reconnecting: k.reconnecting || 0, booting: k.booting || 0 });
    const ws = {};
    for (const x of keys) {
      if (x.key === 'ws:connect') ws.connects = x.rate_per_sec;
      else if (x.key === 'ws:disconnect') ws.drops = x.rate_per_sec;
      else if (x.key.startsWith('ws:close:')) ws['close ' + x.key.slice(9)] = x.rate_per_sec;
    }
    if (!('connects' in ws)) ws.connects = 0;
    if (!('drops' in ws)) ws.drops = 0;
    cWS.push(now, ws);
    const ev = {};
    for (const x of keys) if (x.key.startsWith('event:') && x.p95_ms != null) ev[x.key.slice(6)] = x.p95_ms;
    cEv.push(now, ev);
    methodsBody.replaceChildren(...(keys.length ? keys.map(x => h('tr', { 'data-key': x.key }, h('td.mono', x.key),
      h('td.num', fmtRate(x.rate_per_sec)), h('td.num', fmtPct(x.count ? 100 * x.failures / x.count : null)),
      h('td.num', fmtMS(x.p50_ms)), h('td.num', fmtMS(x.p95_ms)), h('td.num', fmtMS(x.p99_ms)),
      h('td.hide-sm.small.muted', Object.entries(x.outcomes || {}).map(([o, c]) => `${o} ${c}`).join(' · ')), topReason(x)))
      : [h('tr', h('td.empty', { colspan: 8 }, 'No metrics in the last 5 s.'))]));
    labelCells(methodsBody.closest('table'));
  }

  function renderLaunches(ls) {
    ls.sort((a, b) => Date.parse(b.start) - Date.parse(a.start));
    launchesBody.replaceChildren(...(ls.length ? ls.map(l => h('tr', { 'data-launch': l.id },
      h('td', stateChip(l.state)), h('td', h('a', { href: '#/formations/' + encodeURIComponent(l.formation) }, l.name)),
      h('td', fmtTime(l.start)),
      h('td.num', isZeroTime(l.planned_at) ? `– / planned soon` : `${l.started} / ${l.count}`,
        isZeroTime(l.planned_at) ? null : h('div.small.muted', `${l.finished || 0} finished · ${l.failed || 0} failed · ${l.cancelled || 0} cancelled`)),
      h('td.small', (l.shares || []).map(s => h('span.chip' + (s.reported && s.started >= s.count ? '.ok' : ''), `${s.school} ${s.started}/${s.count}`, s.error ? ` (${s.error})` : '')), ' '),
      h('td.hide-sm.small', l.outcome || '')))
      : [h('tr', h('td.empty', { colspan: 6 }, 'No formation launched on this run. Launch one from Formations.'))]));
    labelCells(launchesBody.closest('table'));
  }

  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const [r, m, ls] = await Promise.all([
        api('GET', `/runs/${encodeURIComponent(id)}`),
        api('GET', `/runs/${encodeURIComponent(id)}/metrics?window=${WINDOW}`),
        api('GET', `/launches?run=${encodeURIComponent(id)}`)]);
      run = r;
      render();
      renderMetrics(m);
      renderLaunches(ls);
    } catch (e) {
      if (e.status === 404) { main.replaceChildren(h('div.panel', h('h1', 'No such run'), h('p', e.message), h('a', { href: '#/runs' }, 'All runs'))); }
      else if (e.status !== 401 && e.status !== 0) toast('run: ' + e.message, true);
    } finally { busy = false; }
  }
  refresh();
  return { tick: refresh };
}
