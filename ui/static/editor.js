// editor.js: a plain textarea with a line-number gutter that marks the
// lines the keeper's validator complains about, and a clickable list of
// the diagnostics under it.
import { h } from './lib.js';

export class Editor {
  constructor(text = '', { readOnly = false, label = 'Source' } = {}) {
    this.gutter = h('div.gutter', { 'aria-hidden': 'true' });
    this.ta = h('textarea', { spellcheck: 'false', 'aria-label': label, autocapitalize: 'off', autocomplete: 'off' });
    this.ta.readOnly = readOnly;
    this.bands = h('div.bands', { 'aria-hidden': 'true' });
    this.ta.value = text;
    this.marks = new Map(); // line → 'err' | 'warn'
    this.list = h('ul.diags');
    this.el = h('div.editor-wrap', h('div.editor', this.gutter, h('div.code', this.bands, this.ta)), this.list);
    this.ta.addEventListener('input', () => this.renderGutter());
    this.ta.addEventListener('scroll', () => { this.gutter.scrollTop = this.ta.scrollTop; this.placeBands(); });
    this.ta.addEventListener('keydown', e => {
      if (e.key === 'Tab' && !e.shiftKey && !this.ta.readOnly && !e.ctrlKey && !e.metaKey) {
        // Two spaces, not focus loss; Esc then Tab still leaves the editor.
        if (this.escaped) { this.escaped = false; return; }
        e.preventDefault();
        this.ta.setRangeText('  ', this.ta.selectionStart, this.ta.selectionEnd, 'end');
        this.renderGutter();
      } else if (e.key === 'Escape') this.escaped = true;
    });
    this.renderGutter();
  }

  get value() { return this.ta.value; }
  set value(v) { this.ta.value = v; this.setDiags([]); }

  renderGutter() {
    const n = this.ta.value.split('\n').length;
    const kids = [];
    for (let i = 1; i <= n; i++) {
      const m = this.marks.get(i);
      kids.push(h('div' + (m ? '.' + m : ''), { 'data-line': i }, m === 'err' ? '● ' + i : String(i)));
    }
    this.gutter.replaceChildren(...kids);
    this.gutter.scrollTop = this.ta.scrollTop;
    this.bands.replaceChildren(...[...this.marks].map(([line, m]) => h('div.band.' + m, { style: `top:${8 + (line - 1) * 20}px` })));
    this.placeBands();
  }

  placeBands() { this.bands.style.transform = `translateY(${-this.ta.scrollTop}px)`; }

  /** setDiags marks lines and lists messages: [{line, col, msg, warn}]. */
  setDiags(diags) {
    this.marks.clear();
    for (const d of diags) if (d.line > 0 && this.marks.get(d.line) !== 'err') this.marks.set(d.line, d.warn ? 'warn' : 'err');
    this.renderGutter();
    this.list.replaceChildren(...diags.map(d => h('li' + (d.warn ? '.warn' : ''), { 'data-line': d.line || '' },
      d.line > 0 ? h('button.goto', { type: 'button', onclick: () => this.goto(d.line, d.col) }, `line ${d.line}:${d.col}`) : null,
      d.msg)));
    const first = diags.find(d => d.line > 0 && !d.warn);
    if (first) this.goto(first.line, first.col, false);
  }

  /** goto scrolls to a line and puts the caret at its column. */
  goto(line, col = 1, focus = true) {
    const lines = this.ta.value.split('\n');
    let pos = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) pos += lines[i].length + 1;
    pos += Math.max(0, Math.min((col || 1) - 1, (lines[line - 1] || '').length));
    this.ta.scrollTop = Math.max(0, (line - 4) * 20);
    this.gutter.scrollTop = this.ta.scrollTop;
    if (focus) { this.ta.focus(); this.ta.setSelectionRange(pos, pos); }
  }
}
