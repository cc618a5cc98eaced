// behaviors.js: behavior sets: list, view, upload or edit (one or more
// files, e.g. the warehouse's frequencies beside hand-written sequences),
// with the validator's errors shown at their lines in the right file.
import { api, h, toast, fmtTime, parseDiags, showFieldError, field, applyRole } from './lib.js';
import { Editor } from './editor.js';
import * as generate from './generate.js';

const TEMPLATE = `{
  "boot": {
    "steps": [
      { "request": { "type": "api", "method": "rtm.connect",
                     "post_actions": ["{{ websocketURL .url }}"] } }
    ]
  },
  "behaviors": {
    "auth.test": {
      "frequency": 0.5,
      "steps": [ { "request": { "type": "api", "method": "auth.test" } } ]
    }
  }
}
`;

export function mount(main, hash) {
  const listEl = h('ul.list#behavior-list');
  const detail = h('div#behavior-detail');
  main.append(h('div.page-head', h('div.grow', h('h1', 'Behavior sets'),
    h('div.muted.small', 'Frequencies × sequences: how often each koi calls each API method per minute, and what it sends.')),
  h('div.actions', h('a', { href: '#/behaviors/generate' }, h('button', { type: 'button', 'data-role': 'admin', tabindex: -1 }, 'Generate from warehouse export')),
    h('a', { href: '#/behaviors/new' }, h('button.primary', { type: 'button', 'data-role': 'admin', tabindex: -1 }, 'Upload behavior set')))),
  h('div.split', listEl, detail));

  (async () => {
    let all = [];
    try { all = await api('GET', '/behavior-sets'); } catch (e) { toast('behavior sets: ' + e.message, true); }
    all.sort((a, b) => a.name.localeCompare(b.name) || b.version - a.version);
    const cur = all.find(s => s.hash === hash || s.name === hash);
    listEl.replaceChildren(...(all.length ? all.map(s => h('li', h('a', { href: '#/behaviors/' + s.hash, class: cur && s.hash === cur.hash ? 'active' : null, 'data-name': s.name },
      h('div', h('b', s.name), ` v${s.version}`),
      h('div.sub', `${s.behaviors} behaviors · ${s.files.join(', ')}` + (s.warnings && s.warnings.length ? ` · ${s.warnings.length} warnings` : '')))))
      : [h('li', h('div.empty', 'No behavior sets yet.'))]));
    if (!hash && all.length) { location.replace('#/behaviors/' + all[0].hash); return; }
    if (hash === 'generate') { generate.show(detail, all); return; }
    if (hash && hash !== 'new' && cur) {
      try { showSet(detail, await api('GET', '/behavior-sets/' + encodeURIComponent(cur.hash))); } catch (e) { toast(e.message, true); }
    } else showSet(detail, null);
  })();
  return {};
}

function showSet(detail, set) {
  const files = set ? set.files.map(f => ({ name: f.name, ed: new Editor(f.content, { label: f.name }) }))
    : [{ name: 'behaviors.json', ed: new Editor(TEMPLATE, { label: 'behaviors.json' }) }];
  let active = 0;
  const tabs = h('div.filetabs');
  const host = h('div');
  const fname = h('input', { name: 'filename', 'data-field': 'files[0].name' });
  function renderTabs() {
    tabs.replaceChildren(...files.map((f, i) => h('button' + (i === active ? '.active' : '') + (f.err ? '.haserr' : ''),
      { type: 'button', 'data-file': f.name, onclick: () => { sync(); active = i; renderTabs(); } }, f.name + (f.err ? ` (${f.err})` : ''))),
    h('button', { type: 'button', onclick: () => { sync(); files.push({ name: `file${files.length + 1}.json`, ed: new Editor('{\n  "behaviors": {}\n}\n') }); active = files.length - 1; renderTabs(); } }, '+ file'),
    h('label.inline', { style: 'font-size:.88rem' }, 'or open…', h('input', { type: 'file', multiple: true, accept: '.json,.jsonc,.hujson,application/json', onchange: async ev => {
      sync();
      for (const file of ev.target.files) files.push({ name: file.name, ed: new Editor(await file.text(), { label: file.name }) });
      active = files.length - 1; renderTabs();
    } })));
    fname.value = files[active].name;
    fname.dataset.field = `files[${active}].name`;
    host.replaceChildren(files[active].ed.el);
  }
  function sync() { files[active].name = fname.value.trim() || files[active].name; }
  const name = h('input', { name: 'name', 'data-field': 'name', value: set ? set.name : '', placeholder: 'from the first file name' });
  const form = h('form#behavior-form', { novalidate: true },
    h('div.inline', field('Set name', name), field('File name', fname)),
    tabs, host,
    h('div.form-error', { hidden: true }),
    h('div.form-actions', { style: 'margin-top:.6rem' },
      h('button.primary', { type: 'submit', 'data-role': 'admin' }, set ? 'Save as new version' : 'Upload'),
      h('span.muted.small', 'Checked by the keeper; nothing is stored unless every file is valid.')));
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    sync();
    showFieldError(form, null);
    for (const f of files) { f.err = 0; f.ed.setDiags([]); }
    try {
      const saved = await api('POST', '/behavior-sets', { name: name.value.trim(), files: files.map(f => ({ name: f.name, content: f.ed.value })) });
      toast(`Saved ${saved.name} v${saved.version} (${saved.behaviors} behaviors)` + (saved.warnings && saved.warnings.length ? ` with ${saved.warnings.length} warnings` : '') + '.');
      location.hash = '#/behaviors/' + saved.hash;
    } catch (e) {
      const diags = e.field === 'files' ? parseDiags(e.message) : [];
      const rest = [];
      for (const d of diags) {
        const f = files.find(x => x.name === d.file) || (files.length === 1 && !d.file ? files[0] : null);
        if (f) { (f.diags = f.diags || []).push(d); if (!d.warn) f.err++; } else rest.push(d);
      }
      let firstErr = -1;
      files.forEach((f, i) => { f.ed.setDiags(f.diags || []); if (f.err && firstErr < 0) firstErr = i; f.diags = null; });
      if (firstErr >= 0) active = firstErr;
      renderTabs();
      if (!diags.length) showFieldError(form, e);
      else if (rest.length) showFieldError(form, { message: rest.map(d => d.msg).join('\n') });
    }
  });
  detail.replaceChildren(
    set ? h('div.panel', h('h2', `${set.name} `, h('span.muted', `v${set.version}`)),
      h('div.muted.small', `${set.behaviors} behaviors · uploaded ${fmtTime(set.created_at)}${set.created_by ? ' by ' + set.created_by : ''} · `, h('span.mono', set.hash.slice(0, 12))),
      (set.warnings || []).length ? h('ul.diags', set.warnings.map(w => h('li.warn', w))) : null)
      : h('div.panel', h('h2', 'New behavior set'), h('div.muted.small', 'One file, or several merged by behavior name (frequencies from the warehouse, sequences by hand).')),
    form);
  renderTabs();
  applyRole(detail);
}
