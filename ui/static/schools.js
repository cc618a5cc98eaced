// schools.js: every school the keeper knows, live from /status.
import { h, fmtTime, ago, fmtNum, stateChip, labelCells } from './lib.js';

export function mount(main) {
  const body = h('tbody');
  main.append(h('div.page-head', h('div.grow', h('h1', 'Schools'),
    h('div.muted.small', 'Worker processes. Live: polled within two intervals; late: within the lease; lost: its koi moved elsewhere.'))),
  h('div.table-wrap', h('table#schools-table', h('thead', h('tr', h('th', 'School'), h('th', 'Health'),
    h('th', 'Koi assigned / capacity'), h('th.num', 'Koi connected'), h('th.num', 'Websockets'), h('th', 'Last seen'),
    h('th.num', 'Clock offset'), h('th.hide-sm', 'Software'))), body)));
  function tick(st) {
    const rows = (st.schools || []).map(s => {
      const p = s.status || {};
      const connected = (p.runs || []).reduce((n, r) => n + (r.koi ? r.koi.connected : 0), 0);
      const refused = (p.runs || []).filter(r => r.refused);
      const off = s.clock_offset_ms || 0;
      return h('tr', { 'data-school': s.id },
        h('td', h('b', s.id), p.self_paused ? h('div.small', { style: 'color:var(--warn)' }, 'paused itself: lease expired') : null,
          refused.length ? h('div.small', { style: 'color:var(--bad)' }, refused.map(r => `refuses ${r.run}: ${r.refused}`).join('; ')) : null),
        h('td', stateChip(s.health)),
        h('td.koi', h('div', h('b', fmtNum(s.assigned)), ` / ${fmtNum(s.capacity)}`),
          h('div.progress' + (s.assigned >= s.capacity ? '.warn' : ''), h('span', { style: `width:${s.capacity ? Math.min(100, 100 * s.assigned / s.capacity) : 0}%` }))),
        h('td.num', fmtNum(connected)),
        h('td.num', fmtNum(p.websockets_open || 0)),
        h('td', ago(s.last_seen), h('div.muted.small', fmtTime(s.last_seen))),
        h('td.num', { style: Math.abs(off) > 1000 ? 'color:var(--warn);font-weight:600' : '' }, `${off >= 0 ? '+' : ''}${off.toFixed(1)} ms`),
        h('td.hide-sm.muted.small', s.software || '–'));
    });
    if (!rows.length) rows.push(h('tr', h('td.empty', { colspan: 8 }, 'No school has polled this keeper. Start one: koipond school --nats <the keeper\'s NATS URL>.')));
    body.replaceChildren(...rows);
    labelCells(body.closest('table'));
  }
  return { tick };
}
