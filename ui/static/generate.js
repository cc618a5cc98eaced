// generate.js: "generate from warehouse export": the keeper reads a usage
// export (s3://bucket/prefix, or a path under its --warehouse-dir) and
// previews the frequency table; saved beside a set's sequences it becomes a
// new behavior set.
import { api, h, toast, token, field, showFieldError, fmtNum, applyRole, APIError } from './lib.js';

export function show(detail, sets) {
  const from = h('input', { name: 'from', 'data-field': 'from', placeholder: 's3://bucket/exports/api-calls/ or calls/2026-11.csv', required: true });
  const seqSel = h('select', { name: 'sequences', 'data-field': 'sequences' },
    h('option', { value: '' }, '(none: preview only)'),
    ...sets.map(s => h('option', { value: s.hash }, `${s.name} v${s.version}`)));
  const hourly = h('input', { type: 'checkbox', name: 'hourly' });
  const tz = h('input', { name: 'timezone', 'data-field': 'timezone', placeholder: 'UTC' });
  const team = h('input', { name: 'team', 'data-field': 'team' });
  const client = h('input', { name: 'client', 'data-field': 'client', placeholder: 'desktop or mobile' });
  const top = h('input', { name: 'top', type: 'number', min: 0, 'data-field': 'top' });
  const progress = h('div.muted.small#generate-progress');
  const out = h('div#generate-result');
  const form = h('form#generate-form', { novalidate: true },
    field('Export (s3:// or a path under the keeper\'s warehouse folder)', from),
    h('div.inline', field('Compare with the sequences of', seqSel), field('Team', team), field('Client', client), field('Top N methods', top)),
    h('div.inline', h('label.inline', hourly, ' hour-of-day profile'), field('Time zone', tz)),
    h('div.form-error', { hidden: true }),
    h('div.form-actions', h('button.primary', { type: 'submit', 'data-role': 'admin' }, 'Generate preview'), progress));
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    showFieldError(form, null);
    if (!from.value.trim()) { showFieldError(form, { field: 'from', message: 'Give the export to read.' }); return; }
    const body = { from: from.value.trim(), hourly: hourly.checked };
    if (seqSel.value) body.sequences = seqSel.value;
    if (tz.value.trim()) body.timezone = tz.value.trim();
    if (team.value.trim()) body.team = team.value.trim();
    if (client.value.trim()) body.client = client.value.trim();
    if (top.value) body.top = Number(top.value);
    out.replaceChildren();
    progress.textContent = 'reading…';
    try {
      const rep = await streamGenerate(body, p => {
        progress.textContent = `${p.phase}: ${fmtNum(p.rows)} rows, ${fmtNum(p.rows_per_sec)} rows/s` + (p.object ? ` · ${p.object}` : '');
      });
      progress.textContent = `${fmtNum(rep.result.rows && rep.result.rows.read || 0)} rows read from ${rep.result.objects} part(s).`;
      showPreview(out, rep, sets.find(s => s.hash === seqSel.value), body);
    } catch (e) {
      progress.textContent = '';
      showFieldError(form, e);
    }
  });
  detail.replaceChildren(h('div.panel', h('h2', 'Generate from a warehouse export'),
    h('div.muted.small', 'A raw call log (user, method, timestamp) or pre-aggregated user-minutes, as CSV, JSON lines or Parquet, gzip welcome. ' +
      'Each method\'s frequency is the share of active user-minutes in which the user called it.')), form, out);
  applyRole(detail);
}

// streamGenerate posts the request asking for server-sent progress events
// and resolves with the final result.
async function streamGenerate(body, onProgress) {
  const headers = { 'Content-Type': 'application/json', Accept: 'text/event-stream' };
  if (token()) headers.Authorization = 'Bearer ' + token();
  let resp;
  try {
    resp = await fetch('/api/v1/behavior-sets/generate', { method: 'POST', headers, body: JSON.stringify(body), cache: 'no-store' });
  } catch (e) {
    throw new APIError(0, 'unreachable', 'keeper unreachable: ' + e.message);
  }
  if (!resp.ok) {
    let e = null;
    try { e = (await resp.json()).error; } catch { /* not JSON */ }
    throw new APIError(resp.status, e ? e.code : 'http_' + resp.status, e ? e.message : `HTTP ${resp.status}`, e && e.field);
  }
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new APIError(0, 'unreachable', 'the keeper closed the stream before the result');
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const chunk = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const ev = (chunk.match(/^event: (.*)$/m) || [])[1];
      const data = chunk.split('\n').filter(l => l.startsWith('data: ')).map(l => l.slice(6)).join('\n');
      if (!data) continue;
      const v = JSON.parse(data);
      if (ev === 'progress') onProgress(v);
      else if (ev === 'result') return v;
      else if (ev === 'error') throw new APIError(400, v.error.code, v.error.message, v.error.field);
    }
  }
}

function showPreview(out, rep, seqSet, body) {
  const r = rep.result;
  const cov = r.coverage;
  const rows = (r.methods || []).map(m => h('tr', { 'data-method': m.name },
    h('td.mono', m.name), h('td.num', m.frequency.toFixed(4)), h('td.num', fmtNum(m.user_minutes)), h('td.num', fmtNum(m.calls)),
    h('td', cov ? (m.has_sequence ? '✓' : h('span.warn', 'no sequence')) : '')));
  const name = h('input', { name: 'name', 'data-field': 'name', value: seqSet ? seqSet.name : '' });
  const save = h('form#generate-save', { novalidate: true },
    h('div.inline', field('Save as behavior set', name),
      h('button.primary', { type: 'submit', 'data-role': 'admin', disabled: !seqSet }, 'Save with the sequences')),
    h('div.muted.small', seqSet ? 'Saves the methods that have a sequence, beside the set\'s sequence files, as its next version.'
      : 'Pick a set to compare with to save the frequencies beside its sequences; or copy the file below.'),
    h('div.form-error', { hidden: true }));
  save.addEventListener('submit', async ev => {
    ev.preventDefault();
    showFieldError(save, null);
    try {
      // Only methods with a sequence can be saved (a frequency without
      // steps is an error): generate again keeping just those.
      const kept = await api('POST', '/behavior-sets/generate', { ...body, sequenced_only: true });
      const full = await api('GET', '/behavior-sets/' + encodeURIComponent(seqSet.hash));
      // Keep the set's sequence files; the new frequencies replace its own.
      const keep = full.files.filter(f => /"steps"|"boot"|"on_event"/.test(f.content) && !/^frequencies/.test(f.name.split('/').pop()));
      const saved = await api('POST', '/behavior-sets', { name: name.value.trim() || seqSet.name,
        files: [{ name: 'frequencies.json', content: kept.file.content }, ...keep.map(f => ({ name: f.name, content: f.content }))] });
      toast(`Saved ${saved.name} v${saved.version} (${saved.behaviors} behaviors).`);
      location.hash = '#/behaviors/' + saved.hash;
    } catch (e) {
      showFieldError(save, e);
    }
  });
  out.replaceChildren(h('div.panel',
    h('h2', `${(r.methods || []).length} methods`),
    cov ? h('div.small#generate-coverage', `Covered by sequences: ${(100 * cov.share).toFixed(1)} % of calls` +
      (cov.missing && cov.missing.length ? ` · no sequence for ${cov.missing.join(', ')}` : '')) : null,
    h('table.grid', h('thead', h('tr', h('th', 'method'), h('th.num', 'frequency'), h('th.num', 'user-minutes'), h('th.num', 'calls'), h('th', ''))),
      h('tbody', rows)),
    save,
    h('details', h('summary', 'The frequencies file'), h('pre.mono.small#generate-file', rep.file.content))));
  applyRole(out);
}
