// fidelity.js: a run's fidelity verdict — did the load match its spec —
// as a panel shared by the run view and the report page: the summary
// line, per behavior expected against observed runs with z and the
// verdict (and its cause), per launch the uniformity of the starts, and
// the run-wide notes. Every value is text (h makes text nodes).
import { h, fmtNum, labelCells } from './lib.js';

const CLASS = { matched: 'ok', not_matched: 'bad', unjudged: 'warn', within: 'ok', under: 'bad', over: 'bad', too_little: '', unmeasured: 'warn',
  uniform: 'ok', clumped: 'bad', too_few: '', no_window: '', no_offsets: 'warn', unfinished: '' };
const WORD = { not_matched: 'NOT MATCHED', too_little: 'too little exposure to judge', too_few: 'too few starts to test',
  no_window: 'no window', no_offsets: 'no offsets reported', unfinished: 'not all started yet' };

function chip(v) {
  const cls = CLASS[v] || '';
  return h('span.chip' + (cls ? '.' + cls : ''), { 'data-verdict': v }, WORD[v] || v);
}

function fixed(v, d) { return v === undefined || v === null ? '–' : Number(v).toFixed(d); }

// fidelityPanel returns the panel of a fidelity verdict (null: nothing).
export function fidelityPanel(f) {
  if (!f) return null;
  const behaviors = f.behaviors || [], launches = f.launches || [];
  const kids = [
    h('p#fidelity-summary', { 'data-verdict': f.verdict }, chip(f.verdict), ' ', f.summary),
    h('div.small.muted', `${fmtNum(Math.round(f.koi_minutes || 0))} koi-minutes scheduled` +
      (f.planned_koi_minutes ? ` of ${fmtNum(Math.round(f.planned_koi_minutes))} planned` : '') +
      (f.max_abs_z !== undefined && f.max_abs_z !== null ? ` · largest |z| ${fixed(f.max_abs_z, 2)}` : '') +
      ' · a behavior is within when its completed runs are within 4 standard errors of the runs its frequency asks for over those minutes'),
  ];
  if (behaviors.length) {
    kids.push(h('div.table-wrap', h('table#fidelity-behaviors', h('thead', h('tr', h('th', 'Behavior'), h('th.num', 'Expected'), h('th.num', 'SE'),
      h('th.num', 'Started'), h('th.num', 'Completed'), h('th.num', 'Halted'), h('th.num', 'Failed'), h('th.num', 'z'), h('th', 'Verdict'))),
    h('tbody', behaviors.map(b => h('tr', { 'data-behavior': b.behavior, 'data-verdict': b.verdict, 'data-z': b.z === undefined ? '' : String(b.z) },
      h('td.mono', b.behavior), h('td.num', fixed(b.expected, 1)), h('td.num', fixed(b.se, 1)), h('td.num', fmtNum(b.started)),
      h('td.num', fmtNum(b.completed)), h('td.num', fmtNum(b.halted)), h('td.num', fmtNum(b.failed)), h('td.num', b.z === undefined ? '–' : (b.z >= 0 ? '+' : '') + fixed(b.z, 2)),
      h('td', chip(b.verdict), b.cause ? h('div.small.fidelity-cause', b.cause) : null)))))));
  }
  if (launches.length) {
    kids.push(h('div.table-wrap', h('table#fidelity-launches', h('thead', h('tr', h('th', 'Launch'), h('th.num', 'Planned'), h('th.num', 'Started'),
      h('th.num', 'Completed'), h('th.num', 'KS D'), h('th.num', 'p'), h('th', 'Starts'))),
    h('tbody', launches.map(l => h('tr', { 'data-launch': l.id, 'data-uniformity': l.uniformity, 'data-p': l.p === undefined ? '' : String(l.p) },
      h('td', l.name, h('div.small.muted.mono', l.id)), h('td.num', fmtNum(l.planned)), h('td.num', fmtNum(l.started)), h('td.num', fmtNum(l.completed)),
      h('td.num', fixed(l.ks, 3)), h('td.num', l.p === undefined ? '–' : Number(l.p).toPrecision(3)),
      h('td', chip(l.uniformity), l.note ? h('div.small.muted', l.note) : null)))))));
  }
  for (const n of f.notes || []) kids.push(h('div.small.muted.fidelity-note', n));
  const panel = h('div.panel#fidelity', h('h2', 'Fidelity'), ...kids);
  for (const t of panel.querySelectorAll('table')) labelCells(t);
  return panel;
}
