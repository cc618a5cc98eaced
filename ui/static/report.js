// report.js: a run's report — summary, fidelity, thresholds, per-key table,
// websockets, launches, a CSV download (fetched with the token, never in
// the URL) and a comparison with a baseline run, regressions highlighted.
import { api, h, toast, fmtTime, fmtRate, fmtPct, fmtMS, fmtNum, fmtDur, stateChip, labelCells, token } from './lib.js';
import { fidelityPanel } from './fidelity.js';

const VERDICT_CLASS = { regressed: 'bad', improved: 'ok', new: 'warn', gone: 'warn', same: '' };

function verdictChip(v) {
  const cls = VERDICT_CLASS[v] || '';
  return h('span.chip' + (cls ? '.' + cls : ''), { 'data-verdict': v }, v);
}

// num is a table cell holding a number: the formatted text, the raw value
// in data-v (for tests and copy-paste).
function num(v, text) {
  return h('td.num', { 'data-v': v === null || v === undefined ? '' : String(v) }, text);
}

function observed(t) {
  if (t.observed === undefined || t.observed === null) return t.note || '–';
  if (t.unit === 'ms') return fmtMS(t.observed);
  if (t.unit === 'fraction') return fmtPct(100 * t.observed);
  if (t.unit === 'per_sec') return fmtRate(t.observed) + '/s';
  if (t.unit === 'z') return '|z| ' + Number(t.observed).toFixed(2);
  return fmtNum(t.observed);
}

// statText formats one statistic of a comparison in its unit.
function statText(stat, v) {
  if (v === null || v === undefined) return '–';
  if (stat === 'count') return fmtNum(v);
  if (stat === 'rate_per_sec') return fmtRate(v) + '/s';
  if (stat === 'error_rate') return fmtPct(100 * v);
  return fmtMS(v);
}

function deltaText(s) {
  if (s.delta === undefined || s.delta === null) return '';
  if (s.stat === 'error_rate') return `${s.delta >= 0 ? '+' : ''}${(100 * s.delta).toFixed(2)} pp`;
  if (s.relative === undefined || s.relative === null) return '';
  return `${s.relative >= 0 ? '+' : ''}${(100 * s.relative).toFixed(1)} %`;
}

export function mount(main, id) {
  let destroyed = false, csvURL = '';
  const enc = encodeURIComponent(id);
  const title = h('h1', 'Report');
  const chip = h('span');
  const meta = h('div.muted.small');
  const summary = h('div.stats#report-summary');
  const fidelityBox = h('div');
  const thresholdsBox = h('div');
  const capacityBox = h('div');
  const keysBody = h('tbody');
  const reasonsBox = h('div');
  const wsBox = h('div.panel#report-ws');
  const launchesBody = h('tbody');
  const csv = h('a#report-csv', { href: '#', role: 'button' }, 'Download CSV');
  const baseSel = h('select#baseline', { name: 'baseline', 'data-field': 'baseline', 'aria-label': 'baseline run' });
  const tolInput = h('input#tolerance', { name: 'tolerance', 'data-field': 'tolerance', value: '10%', size: 6, 'aria-label': 'tolerance' });
  const cmpBox = h('div#comparison-box');
  const cmpForm = h('form.inline#compare-form', { novalidate: true },
    h('label.field', h('span', 'Baseline run'), baseSel, h('small.field-error')),
    h('label.field', h('span', 'Tolerance'), tolInput, h('small.field-error')),
    h('button.primary', { type: 'submit', style: 'align-self:flex-end' }, 'Compare'),
    h('div.form-error', { hidden: true }));

  main.append(
    h('div.page-head', h('div.grow', h('div.small', h('a', { href: '#/runs/' + enc }, '← Run'), ' · ', h('a', { href: '#/runs' }, 'Runs')),
      h('div.inline', title, chip), meta), csv),
    summary,
    fidelityBox,
    thresholdsBox,
    capacityBox,
    h('h2', 'Metric keys (the whole run)'),
    h('div.table-wrap', h('table#report-keys', h('thead', h('tr', h('th', 'Key'), h('th.num', 'Count'), h('th.num', 'Rate'),
      h('th.num', 'Errors'), h('th.num', 'p50'), h('th.num', 'p90'), h('th.num', 'p95'), h('th.num', 'p99'), h('th.num', 'Max'),
      h('th.hide-sm', 'Outcomes'))), keysBody)),
    reasonsBox,
    h('h2', 'Websockets'), wsBox,
    h('h2', 'Launches'),
    h('div.table-wrap', h('table#report-launches', h('thead', h('tr', h('th', 'Formation'), h('th', 'State'), h('th', 'Start'),
      h('th.num', 'Started / planned'), h('th.num', 'First koi after'), h('th.num', 'Spread'), h('th', 'Per school'))), launchesBody)),
    h('h2', 'Compare with a baseline'),
    h('div.panel', h('div.muted.small', 'Latencies, rates and counts change when they move by more than the tolerance (latencies also by more than the sketches’ 1 % error and 1 ms); error rates when they move by more than 0.5 percentage points. Counts, rates and error rates must also move beyond three standard deviations of counting noise.'),
      cmpForm, cmpBox));

  function renderReport(rep) {
    title.textContent = rep.name || rep.run;
    chip.replaceChildren(stateChip(rep.state));
    meta.replaceChildren(h('span.mono', rep.run), ` · ${rep.final ? 'final report' : 'provisional: the run has not settled'} · ${fmtTime(rep.from)} → ${fmtTime(rep.to)}`);
    const verdict = rep.passed === undefined || rep.passed === null ? 'no thresholds' : rep.passed ? 'thresholds passed' : 'THRESHOLDS FAILED';
    summary.replaceChildren(
      h('div.stat', h('div.k', 'State'), h('div.v', { 'data-v': rep.state }, rep.state)),
      h('div.stat', h('div.k', 'Duration'), h('div.v#report-duration', { 'data-v': rep.duration_secs }, fmtDur(1000 * rep.duration_secs))),
      h('div.stat', h('div.k', 'Koi'), h('div.v#report-koi', String(rep.koi))),
      h('div.stat', h('div.k', 'End reason'), h('div.v.small', rep.end_reason || '–')),
      h('div.stat', h('div.k', 'Fidelity'), h('div.v#report-fidelity', { 'data-verdict': rep.fidelity ? rep.fidelity.verdict : '',
        style: rep.fidelity && rep.fidelity.verdict === 'not_matched' ? 'color:var(--bad)' : rep.fidelity && rep.fidelity.verdict === 'matched' ? 'color:var(--ok)' : '' },
      rep.fidelity ? (rep.fidelity.verdict === 'not_matched' ? 'NOT MATCHED' : rep.fidelity.verdict) : '–')),
      h('div.stat', h('div.k', 'Verdict'), h('div.v#report-verdict', { 'data-passed': String(rep.passed), style: rep.passed === false ? 'color:var(--bad)' : rep.passed ? 'color:var(--ok)' : '' }, verdict)));
    fidelityBox.replaceChildren(...[fidelityPanel(rep.fidelity)].filter(Boolean));
    const ths = rep.thresholds || [];
    thresholdsBox.replaceChildren(...(ths.length ? [h('h2', 'Thresholds'), h('div.table-wrap', h('table#report-thresholds',
      h('thead', h('tr', h('th', 'Key'), h('th', 'Condition'), h('th.num', 'Observed'), h('th', 'Verdict'))),
      h('tbody', ths.map(t => h('tr', { 'data-key': t.key, 'data-passed': String(t.passed) }, h('td.mono', t.key), h('td.mono', t.expr),
        h('td.num', observed(t)), h('td', h('span.chip.' + (t.passed ? 'ok' : 'bad'), t.passed ? 'pass' : 'FAIL'),
          t.live_failures ? h('span.small.muted', ` · failed live ${t.live_failures}× over ${fmtDur(1000 * (t.live_failed_secs || 0))}`) : null))))))] : []));
    // A capacity search (when the run was one): the largest koi count held, step by step.
    const cap = rep.capacity;
    capacityBox.replaceChildren(...(cap ? [h('h2', 'Capacity search'),
      h('p#report-capacity', { 'data-sustained': cap.sustained }, h('b', `${cap.sustained} koi sustained`), cap.done ? ` · ${cap.reason || 'done'}` : ' · still searching'),
      h('div.table-wrap', h('table#report-capacity-steps', h('thead', h('tr', h('th.num', 'Koi'), h('th', 'Held'), h('th', 'Key'), h('th.num', 'Rate'),
        h('th.num', 'Errors'), h('th.num', 'p95'), h('th', 'Why'))),
      h('tbody', (cap.steps || []).map(st => h('tr', h('td.num', String(st.koi)), h('td', h('span.chip.' + (st.held ? 'ok' : 'bad'), st.held ? 'held' : 'broke')),
        h('td.mono', st.key || '–'), h('td.num', fmtRate(st.rate_per_sec) + '/s'), h('td.num', fmtPct(100 * (st.error_rate || 0))), h('td.num', fmtMS(st.p95_ms)),
        h('td.small', st.reason || ''))))))] : []));
    keysBody.replaceChildren(...(rep.keys.length ? rep.keys.map(k => h('tr', { 'data-key': k.key },
      h('td.mono', k.key), num(k.count, fmtNum(k.count)), num(k.rate_per_sec, fmtRate(k.rate_per_sec) + '/s'),
      num(k.error_rate, fmtPct(100 * k.error_rate)),
      num(k.p50_ms, fmtMS(k.p50_ms)), num(k.p90_ms, fmtMS(k.p90_ms)), num(k.p95_ms, fmtMS(k.p95_ms)), num(k.p99_ms, fmtMS(k.p99_ms)), num(k.max_ms, fmtMS(k.max_ms)),
      h('td.hide-sm.small.muted', Object.entries(k.outcomes || {}).sort().map(([o, c]) => `${o} ${c}`).join(' · '))))
      : [h('tr', h('td.empty', { colspan: 10 }, 'No metrics were reported for this run.'))]));
    labelCells(keysBody.closest('table'));
    renderReasons(rep.keys);
    const ws = rep.websocket || {};
    const closes = Object.entries(ws.closes || {}).map(([c, n]) => `${c}×${n}`).join(' ') || 'none';
    wsBox.replaceChildren(h('div.stats',
      h('div.stat', h('div.k', 'Connects'), h('div.v#ws-connects', String(ws.connects || 0))),
      h('div.stat', h('div.k', 'Failed connects'), h('div.v', String(ws.connect_failures || 0))),
      h('div.stat', h('div.k', 'Drops'), h('div.v#ws-drops', String(ws.drops || 0))),
      h('div.stat', h('div.k', 'Reconnects'), h('div.v', String(ws.reconnects || 0))),
      h('div.stat', h('div.k', 'Connect p95'), h('div.v', fmtMS(ws.connect_p95_ms)))),
    h('div.small.muted', `Closes by code: ${closes}`));
    const ls = rep.launches || [];
    launchesBody.replaceChildren(...(ls.length ? ls.map(l => h('tr', { 'data-launch': l.id },
      h('td', l.name, (l.steps || []).filter(k => k.key !== l.key).map(k => h('div.small.muted.launch-step', { 'data-key': k.key },
        `step ${k.key.slice(l.key.length + 1)}: ${fmtNum(k.count)} calls, ${fmtNum(k.failures)} failed, p95 ${fmtMS(k.p95_ms)}`))), h('td', stateChip(l.state)), h('td', fmtTime(l.start)), h('td.num', `${l.started} / ${l.planned}`, h('div.small.muted', `${l.finished || 0} finished · ${l.failed || 0} failed · ${l.cancelled || 0} cancelled`)),
      h('td.num', fmtMS(l.first_delay_ms)), h('td.num', fmtMS(l.spread_ms)),
      h('td.small', (l.schools || []).map(s => h('span.chip' + (s.started >= s.planned ? '.ok' : '.warn'), `${s.school} ${s.started}/${s.planned} · ${fmtMS(s.spread_ms)}`, s.error ? ` (${s.error})` : '')))))
      : [h('tr', h('td.empty', { colspan: 7 }, 'No formation was launched on this run.'))]));
    labelCells(launchesBody.closest('table'));
  }

  // Failures by reason: per failing key, each recorded reason with its
  // count, its share of the key's failures and one sample.
  function renderReasons(keys) {
    const rows = [];
    for (const k of keys) for (const r of k.reasons || []) rows.push(h('tr', { 'data-key': k.key, 'data-reason': r.reason, 'data-count': r.count },
      h('td.mono', k.key), h('td.mono', r.reason), num(r.count, fmtNum(r.count)),
      num(k.failures ? r.count / k.failures : null, k.failures ? fmtPct(100 * r.count / k.failures) : '–'),
      h('td.small.mono.sample', r.sample || '')));
    reasonsBox.replaceChildren(...(rows.length ? [h('h2', 'Failures by reason'),
      h('div.table-wrap', h('table#report-reasons', h('thead', h('tr', h('th', 'Key'), h('th', 'Reason'), h('th.num', 'Count'),
        h('th.num', 'Share of failures'), h('th', 'Sample'))), h('tbody', rows)))] : []));
    if (rows.length) labelCells(reasonsBox.querySelector('table'));
  }

  function renderComparison(c) {
    const stats = ['rate_per_sec', 'error_rate', 'p50_ms', 'p95_ms', 'p99_ms', 'max_ms'];
    const names = { rate_per_sec: 'Rate', error_rate: 'Errors', p50_ms: 'p50', p95_ms: 'p95', p99_ms: 'p99', max_ms: 'Max' };
    const rows = c.keys.map(k => {
      const by = Object.fromEntries(k.stats.map(s => [s.stat, s]));
      return h('tr' + (k.verdict === 'regressed' ? '.regressed' : k.verdict === 'improved' ? '.improved' : ''), { 'data-key': k.key, 'data-verdict': k.verdict },
        h('td.mono', k.key), h('td', verdictChip(k.verdict)),
        stats.map(st => {
          const s = by[st];
          if (!s) return h('td.num', '–');
          return h('td.num' + (s.verdict === 'regressed' ? '.regressed' : s.verdict === 'improved' ? '.improved' : ''), { 'data-stat': st, 'data-verdict': s.verdict },
            h('div', `${statText(st, s.baseline)} → ${statText(st, s.value)}`), h('div.small', deltaText(s)));
        }));
    });
    const kids = [h('p#comparison-summary', `Against ${c.baseline_name || c.baseline} (`, h('span.mono', c.baseline),
      `), tolerance ${+(100 * c.tolerance).toFixed(2)} %: `, h('b', `${c.regressed} regressed`), `, ${c.improved} improved, of ${c.keys.length} keys.`),
    h('div.table-wrap', h('table#comparison', h('thead', h('tr', h('th', 'Key'), h('th', 'Verdict'), stats.map(st => h('th.num', names[st])))), h('tbody', rows)))];
    if (c.thresholds.length) {
      kids.push(h('h3', 'Thresholds'), h('div.table-wrap', h('table#comparison-thresholds', h('thead', h('tr', h('th', 'Key'), h('th', 'Condition'), h('th', 'Baseline'), h('th', 'This run'), h('th', 'Verdict'))),
        h('tbody', c.thresholds.map(t => h('tr' + (t.verdict === 'regressed' ? '.regressed' : ''), { 'data-verdict': t.verdict }, h('td.mono', t.key), h('td.mono', t.expr),
          h('td', t.baseline_passed === undefined ? '–' : t.baseline_passed ? 'pass' : 'FAIL'), h('td', t.passed === undefined ? '–' : t.passed ? 'pass' : 'FAIL'), h('td', verdictChip(t.verdict))))))));
    }
    if (c.launches.length) {
      kids.push(h('h3', 'Launch start spreads'), h('div.table-wrap', h('table#comparison-launches', h('thead', h('tr', h('th', 'Formation'), h('th.num', 'Baseline'), h('th.num', 'This run'), h('th', 'Verdict'))),
        h('tbody', c.launches.map(l => h('tr' + (l.verdict === 'regressed' ? '.regressed' : ''), { 'data-verdict': l.verdict }, h('td', `${l.name} #${l.index + 1}`),
          h('td.num', fmtMS(l.baseline_spread_ms)), h('td.num', fmtMS(l.spread_ms)), h('td', verdictChip(l.verdict))))))));
    }
    cmpBox.replaceChildren(...kids);
    labelCells(cmpBox.querySelector('#comparison'));
  }

  cmpForm.addEventListener('submit', async ev => {
    ev.preventDefault();
    const base = baseSel.value, tol = tolInput.value.trim();
    if (!base) return showError({ field: 'baseline', message: 'pick a run to compare with' });
    showError(null);
    try {
      const r = await api('GET', `/runs/${enc}/report?baseline=${encodeURIComponent(base)}&tolerance=${encodeURIComponent(tol || '10%')}`);
      renderComparison(r.comparison);
    } catch (e) { showError(e); }
  });

  function showError(err) {
    for (const el of cmpForm.querySelectorAll('.field-error')) el.textContent = '';
    const box = cmpForm.querySelector('.form-error');
    box.hidden = !err;
    box.textContent = err ? (err.field ? err.field + ': ' : '') + err.message : '';
    const f = err && err.field && cmpForm.querySelector(`[data-field="${CSS.escape(err.field)}"]`);
    if (f) { f.closest('.field').querySelector('.field-error').textContent = err.message; box.hidden = true; }
  }

  // The CSV goes through fetch so the token stays in a header; the file
  // is handed to the browser as a blob URL.
  csv.addEventListener('click', async ev => {
    ev.preventDefault();
    try {
      const headers = { Accept: 'text/csv' };
      if (token()) headers.Authorization = 'Bearer ' + token();
      const resp = await fetch(`/api/v1/runs/${enc}/report?format=csv`, { headers, cache: 'no-store' });
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      const blob = await resp.blob();
      if (csvURL) URL.revokeObjectURL(csvURL);
      csvURL = URL.createObjectURL(blob);
      const a = h('a', { href: csvURL, download: `report-${id}.csv`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
    } catch (e) { toast('CSV: ' + e.message, true); }
  });

  async function load() {
    try {
      const [rep, runs] = await Promise.all([api('GET', `/runs/${enc}/report`), api('GET', '/runs')]);
      if (destroyed) return;
      renderReport(rep);
      runs.sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
      const keep = baseSel.value;
      baseSel.replaceChildren(h('option', { value: '' }, '— pick a run —'),
        ...runs.filter(r => r.id !== id).map(r => h('option', { value: r.id }, `${r.name} · ${r.state} · ${fmtTime(r.started_at)} (${r.id})`)));
      baseSel.value = keep;
      return rep;
    } catch (e) {
      if (e.status === 404) main.replaceChildren(h('div.panel', h('h1', 'No such run'), h('p', e.message), h('a', { href: '#/runs' }, 'All runs')));
      else if (e.status !== 401 && e.status !== 0) toast('report: ' + e.message, true);
    }
  }
  // A provisional report (the run is live) refreshes every 5 s until final.
  let timer = 0;
  (async function loop() {
    const rep = await load();
    if (!destroyed && rep && !rep.final) timer = setTimeout(loop, 5000);
  })();
  return { destroy() { destroyed = true; clearTimeout(timer); if (csvURL) URL.revokeObjectURL(csvURL); } };
}
