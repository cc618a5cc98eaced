// generate.js: "generate from warehouse export": the keeper reads a usage
// export (an uploaded file, s3://bucket/prefix, or a path under its
// --warehouse-dir, listed here) and previews the frequency table; saved
// beside a set's sequences it becomes a new behavior set (under a new name
// by default; over an existing one only after asking). With "learn call
// order" the preview also lists the transitions learned from the export's
// sessions, each with a keep/drop box: regenerating and saving leave the
// dropped ones out.
import { api, h, toast, token, field, showFieldError, fmtNum, fmtMS, applyRole, APIError } from './lib.js';

export function show(detail, sets) {
  // Latest version of each set, for the compare list and taken names.
  const latest = new Map();
  for (const s of sets) if (!latest.has(s.name) || latest.get(s.name).version < s.version) latest.set(s.name, s);
  const from = h('input', { name: 'from', 'data-field': 'from', placeholder: 's3://bucket/exports/api-calls/ or calls/2026-11.csv' });
  const file = h('input', { type: 'file', name: 'file', 'data-field': 'file', accept: '.csv,.tsv,.jsonl,.json,.ndjson,.parquet,.gz,.zst' });
  const exportsBox = h('div.small#generate-exports', 'Looking for exports in the keeper\'s warehouse folder…');
  const seqSel = h('select', { name: 'sequences', 'data-field': 'sequences' },
    h('option', { value: '' }, '(none: preview only)'),
    ...[...latest.values()].map(s => h('option', { value: s.hash }, `${s.name} v${s.version}`)));
  const hourly = h('input', { type: 'checkbox', name: 'hourly' });
  const tz = h('input', { name: 'timezone', 'data-field': 'timezone', placeholder: 'UTC' });
  const team = h('input', { name: 'team', 'data-field': 'team' });
  const client = h('input', { name: 'client', 'data-field': 'client', placeholder: 'desktop or mobile' });
  const top = h('input', { name: 'top', type: 'number', min: 0, 'data-field': 'top' });
  const sessions = h('input', { type: 'checkbox', name: 'sessions' });
  const gap = h('input', { name: 'session_gap', 'data-field': 'session_gap', placeholder: '30m' });
  const progress = h('div.muted.small#generate-progress');
  const out = h('div#generate-result');
  let uploadLimit = 32 << 20;
  const form = h('form#generate-form', { novalidate: true },
    field('Export (s3:// or a path under the keeper\'s warehouse folder)', from),
    exportsBox,
    field('…or upload an export file (CSV, JSON lines or Parquet, gzip welcome)', file, { hint: 'Up to 32 MiB; it is read and discarded, never stored.' }),
    h('div.inline', field('Compare with the sequences of', seqSel), field('Team', team), field('Client', client), field('Top N methods', top)),
    h('div.inline', h('label.inline', hourly, ' hour-of-day profile'), field('Time zone', tz)),
    h('div.inline', h('label.inline', sessions, ' learn call order (sessions)'),
      field('Session gap', gap, { hint: 'A silence this long ends a session (Go duration; default 30m).' })),
    h('div.form-error', { hidden: true }),
    h('div.form-actions', h('button.primary', { type: 'submit', 'data-role': 'admin' }, 'Generate preview'), progress));
  file.addEventListener('change', () => { if (file.files.length) from.value = ''; });
  from.addEventListener('input', () => { if (from.value) file.value = ''; });
  (async () => {
    try {
      const ex = await api('GET', '/behavior-sets/generate/exports');
      uploadLimit = ex.upload_limit || uploadLimit;
      if (!ex.local) {
        exportsBox.replaceChildren('Local exports are off (start the keeper with --warehouse-dir); upload a file or give s3://.');
        return;
      }
      if (!from.value && !file.files.length && ex.exports.length) from.value = ex.exports[0].path;
      exportsBox.replaceChildren(`In the warehouse folder ${ex.folder}: `, ...ex.exports.flatMap((e, i) => [i ? ' · ' : '',
        h('a', { href: '#', 'data-export': e.path, onclick: ev => { ev.preventDefault(); from.value = e.path; file.value = ''; } },
          e.path === '.' ? '(the whole folder)' : e.path + (e.dir ? '/' : '') + (e.size ? ` (${fmtBytes(e.size)})` : ''))]));
    } catch (e) {
      exportsBox.textContent = '';
    }
  })();
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    showFieldError(form, null);
    const upload = file.files.length ? file.files[0] : null;
    if (!upload && !from.value.trim()) { showFieldError(form, { field: 'from', message: 'Give the export to read, or upload a file.' }); return; }
    if (upload && upload.size > uploadLimit) {
      showFieldError(form, { field: 'file', message: `${upload.name} is ${fmtBytes(upload.size)}: over the ${fmtBytes(uploadLimit)} upload limit. Put bigger exports under the keeper's --warehouse-dir or on S3.` });
      return;
    }
    const body = { hourly: hourly.checked };
    if (!upload) body.from = from.value.trim();
    if (seqSel.value) body.sequences = seqSel.value;
    if (tz.value.trim()) body.timezone = tz.value.trim();
    if (team.value.trim()) body.team = team.value.trim();
    if (client.value.trim()) body.client = client.value.trim();
    if (top.value) body.top = Number(top.value);
    if (sessions.checked) {
      body.sessions = true;
      if (gap.value.trim()) body.session_gap = gap.value.trim();
    }
    out.replaceChildren();
    try {
      await runGenerate({ body, upload }, sets.find(s => s.hash === seqSel.value));
    } catch (e) {
      showFieldError(form, e);
    }
  });
  // runGenerate generates req and shows its preview; the preview calls it
  // again to regenerate with transitions dropped.
  async function runGenerate(req, seqSet) {
    progress.textContent = req.upload ? 'uploading…' : 'reading…';
    const onProgress = p => {
      progress.textContent = `${p.phase}: ${fmtNum(p.rows)} rows, ${fmtNum(p.rows_per_sec)} rows/s` + (p.object ? ` · ${p.object}` : '');
    };
    try {
      const rep = await streamGenerate(req, onProgress);
      progress.textContent = `${fmtNum(rep.result.rows && rep.result.rows.read || 0)} rows read from ${rep.result.objects} part(s) of ${rep.result.source}.`;
      showPreview(out, rep, seqSet, req, latest, drops => runGenerate({ body: withDrops(req.body, drops), upload: req.upload }, seqSet));
    } catch (e) {
      progress.textContent = '';
      throw e;
    }
  }
  detail.replaceChildren(h('div.panel', h('h2', 'Generate from a warehouse export'),
    h('div.muted.small', 'A raw call log (user, method, timestamp) or pre-aggregated user-minutes, as CSV, JSON lines or Parquet, gzip welcome. ' +
      'Each method\'s frequency is the share of active user-minutes in which the user called it.')), form, out);
  applyRole(detail);
}

function fmtBytes(n) {
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + ' MiB';
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + ' KiB';
  return n + ' B';
}

// generateRequest sends one generate request: JSON with the export's
// path, or the uploaded file itself with the options as query parameters.
function generateRequest({ body, upload }, headers) {
  if (!upload) {
    return fetch('/api/v1/behavior-sets/generate', { method: 'POST', headers: { ...headers, 'Content-Type': 'application/json' }, body: JSON.stringify(body), cache: 'no-store' });
  }
  const q = new URLSearchParams({ name: upload.name });
  for (const [k, v] of Object.entries(body)) {
    if (Array.isArray(v)) for (const x of v) q.append(k, String(x));
    else q.set(k, String(v));
  }
  return fetch('/api/v1/behavior-sets/generate/upload?' + q, { method: 'POST', headers: { ...headers, 'Content-Type': 'application/octet-stream' }, body: upload, cache: 'no-store' });
}

// streamGenerate posts the request asking for server-sent progress events
// and resolves with the final result.
async function streamGenerate(req, onProgress) {
  const headers = { Accept: 'text/event-stream' };
  if (token()) headers.Authorization = 'Bearer ' + token();
  let resp;
  try {
    resp = await generateRequest(req, headers);
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

// dropSummary says what the output leaves out: methods dropped by the
// request (top N) and, when saving beside sequences, those without one.
function dropSummary(r, willSave) {
  const total = r.total_calls || 0;
  const calls = new Map((r.methods || []).map(m => [m.name, m.calls]));
  const parts = [];
  let n = 0, lost = 0;
  if (r.dropped && r.dropped.length) {
    n += r.dropped.length;
    lost += r.dropped_calls || 0;
    parts.push(`${r.dropped.join(', ')} (${Object.keys(r.dropped_why || {}).join(', ').replace(/_/g, ' ')})`);
  }
  const missing = (r.coverage && r.coverage.missing) || [];
  if (willSave && missing.length) {
    n += missing.length;
    for (const m of missing) lost += calls.get(m) || 0;
    parts.push(`${missing.join(', ')} (no sequence: dropped when saved)`);
  }
  if (!n) return null;
  const share = total ? (100 * lost / total).toFixed(1) : '0.0';
  return { n, share, text: `Dropped ${n} method${n === 1 ? '' : 's'}, ${share} % of the export's calls: ${parts.join('; ')}.` };
}

// newName returns base, or base-2, base-3… whichever no set has.
function newName(base, latest) {
  let name = base;
  for (let i = 2; latest.has(name); i++) name = `${base}-${i}`;
  return name;
}

// withDrops returns body asking to leave out the transitions drops lists
// ("from>to"), or none when it is empty.
function withDrops(body, drops) {
  const b = { ...body };
  delete b.drop_transitions;
  if (drops.length) b.drop_transitions = drops;
  return b;
}

// fmtGap writes a session gap (ns) in minutes or hours.
function fmtGap(ns) {
  const min = (ns || 0) / 6e10;
  return min >= 120 ? `${+(min / 60).toFixed(1)} h` : min >= 1 ? `${+min.toFixed(1)} min` : `${+(min * 60).toFixed(1)} s`;
}

function pct(x) { return (100 * (x || 0)).toFixed(1); }

// sessionsPanel shows the learned call order: sessions, coverage, entry
// methods and a table of transitions with a keep box each. A transition
// the request dropped is unchecked and can be kept again; one the
// generator pruned (too rare, too deep) cannot be kept. drops() lists the
// unchecked ones; onChange is told when a box changes.
function sessionsPanel(s, requested, onChange) {
  const asked = new Set(requested || []);
  const boxes = [];
  const rows = (s.transitions || []).map(t => {
    const key = `${t.from}>${t.to}`;
    const pruned = !t.kept && !t.dropped && !asked.has(key);
    const box = h('input', { type: 'checkbox', name: 'keep', 'data-transition': key, checked: t.kept, disabled: pruned,
      title: pruned ? 'Pruned by the generator (too rare or too deep): not in the set' : 'Keep this transition in the generated sequences',
      onchange: onChange });
    if (!pruned) boxes.push(box);
    return h('tr', { 'data-transition': key, class: t.kept ? null : 'dropped' },
      h('td.mono', t.from), h('td.mono', t.to),
      h('td.num', `${pct(t.probability)} % ± ${pct(t.se)}`),
      h('td.num', `${fmtMS(t.delay_p50_ms)} / ${fmtMS(t.delay_p90_ms)}`),
      h('td.num', fmtNum(t.count)),
      h('td', h('label.inline', box, pruned ? ' pruned' : ' keep')));
  });
  const entries = (s.entries || []).slice(0, 10).map(e => `${e.method} ${e.frequency.toFixed(4)}`).join(' · ');
  const el = h('div.panel#generate-sessions',
    h('h2', `Call order: ${(s.transitions || []).length} transitions`),
    h('div.small#generate-sessions-coverage', { 'data-coverage': s.coverage },
      `${fmtNum(s.count)} sessions of ${fmtNum(s.users)} users (a silence of ${fmtGap(s.gap_ns)} ends one) · ` +
      `the generated set reproduces ${pct(s.coverage)} % of the observed transitions`),
    entries ? h('div.small.muted', 'Sessions begin with: ', entries) : null,
    (s.notes || []).length ? h('ul.small.warn#generate-sessions-notes', s.notes.map(n => h('li', n))) : null,
    rows.length ? h('table.grid#generate-transitions',
      h('thead', h('tr', h('th', 'from'), h('th', 'to'), h('th.num', 'probability ± SE'), h('th.num', 'delay p50 / p90'), h('th.num', 'count'), h('th', ''))),
      h('tbody', rows)) : h('div.muted.small', 'No transitions were learned.'));
  return { el, drops: () => boxes.filter(b => !b.checked).map(b => b.dataset.transition) };
}

function showPreview(out, rep, seqSet, req, latest, regenerate) {
  const r = rep.result;
  const cov = r.coverage;
  const rows = (r.methods || []).map(m => h('tr', { 'data-method': m.name },
    h('td.mono', m.name), h('td.num', m.frequency.toFixed(4)), h('td.num', fmtNum(m.user_minutes)), h('td.num', fmtNum(m.calls)),
    h('td', cov ? (m.has_sequence ? '✓' : h('span.warn', 'no sequence')) : '')));
  const drops = dropSummary(r, !!seqSet);
  // A new name by default: saving over the compared set is a choice the
  // user makes when asked, never the default.
  const stem = (r.source || 'export').split('/').pop().replace(/\.(gz|zst)$/, '').replace(/\.[a-z]+$/i, '').replace(/[^\w.-]+/g, '-');
  const name = h('input', { name: 'name', 'data-field': 'name', value: seqSet ? newName(`${seqSet.name}-${stem}`, latest) : '' });
  const ask = h('div#generate-overwrite-ask', { hidden: true });
  const save = h('form#generate-save', { novalidate: true },
    h('div.inline', field('Save as behavior set', name),
      h('button.primary', { type: 'submit', 'data-role': 'admin', disabled: !seqSet }, 'Save with the sequences')),
    h('div.muted.small', seqSet ? `Saves the methods that have a sequence, beside the sequence files of ${seqSet.name} v${seqSet.version}, as a new set.`
      : 'Pick a set to compare with to save the frequencies beside its sequences; or copy the file below.'),
    ask,
    h('div.form-error', { hidden: true }));
  // The learned call order, when asked for; its unchecked transitions
  // are left out when regenerating and saving.
  const regen = h('button#generate-regenerate', { type: 'button', 'data-role': 'admin', hidden: true }, 'Regenerate without the unchecked transitions');
  const sess = r.sessions ? sessionsPanel(r.sessions, req.body.drop_transitions, () => {
    const now = sess.drops().join('\n'), before = (req.body.drop_transitions || []).join('\n');
    regen.hidden = now === before;
  }) : null;
  regen.addEventListener('click', async () => {
    regen.disabled = true;
    try {
      await regenerate(sess.drops());
    } catch (e) {
      regen.disabled = false;
      showFieldError(save, e);
    }
  });
  async function doSave(overwrite) {
    // Only methods with a sequence can be saved (a frequency without
    // steps is an error): generate again keeping just those, and
    // leaving out the transitions unchecked now.
    const body = sess ? withDrops(req.body, sess.drops()) : req.body;
    const kept = await streamGenerate({ body: { ...body, sequenced_only: true }, upload: req.upload }, () => {});
    const full = await api('GET', '/behavior-sets/' + encodeURIComponent(seqSet.hash));
    // Keep the set's sequence files; the new frequencies replace its own.
    const keep = full.files.filter(f => /"steps"|"boot"|"on_event"/.test(f.content) && !/^frequencies/.test(f.name.split('/').pop()));
    return api('POST', '/behavior-sets', { name: name.value.trim(), overwrite,
      files: [{ name: 'frequencies.json', content: kept.file.content }, ...keep.map(f => ({ name: f.name, content: f.content }))] });
  }
  async function saveAndGo(overwrite) {
    showFieldError(save, null);
    ask.hidden = true;
    if (!name.value.trim()) { showFieldError(save, { field: 'name', message: 'Give the new set a name.' }); return; }
    try {
      const saved = await doSave(overwrite);
      toast(`Saved ${saved.name} v${saved.version} (${saved.behaviors} behaviors).`);
      location.hash = '#/behaviors/' + saved.hash;
    } catch (e) {
      if (e.status === 409) {
        // Taken: ask, and save over it only on an explicit yes.
        ask.replaceChildren(h('div.warn', e.message),
          h('div.form-actions', h('button#generate-overwrite-yes', { type: 'button', 'data-role': 'admin', onclick: () => saveAndGo(true) },
            `Save as the next version of ${name.value.trim()}`),
          h('button#generate-overwrite-no', { type: 'button', onclick: () => { ask.hidden = true; name.focus(); } }, 'Cancel: pick another name')));
        ask.hidden = false;
        applyRole(ask);
        return;
      }
      showFieldError(save, e);
    }
  }
  save.addEventListener('submit', ev => { ev.preventDefault(); saveAndGo(false); });
  out.replaceChildren(h('div.panel',
    h('h2', `${(r.methods || []).length} methods`),
    cov ? h('div.small#generate-coverage', `Covered by sequences: ${(100 * cov.share).toFixed(1)} % of calls` +
      (cov.missing && cov.missing.length ? ` · no sequence for ${cov.missing.join(', ')}` : '')) : null,
    drops ? h('div.small.warn#generate-dropped', { 'data-count': drops.n, 'data-share': drops.share }, drops.text) : null,
    h('table.grid', h('thead', h('tr', h('th', 'method'), h('th.num', 'frequency'), h('th.num', 'user-minutes'), h('th.num', 'calls'), h('th', ''))),
      h('tbody', rows))),
    sess ? sess.el : null,
    sess ? h('div.form-actions', regen) : null,
    h('div.panel', save,
      h('details', h('summary', r.sessions ? 'The generated file' : 'The frequencies file'), h('pre.mono.small#generate-file', rep.file.content))));
  applyRole(out);
}
