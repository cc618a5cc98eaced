// chart.js: a small SVG time-series chart. A Chart keeps its own ring of
// points per series (one per poll) and redraws on push.

const NS = 'http://www.w3.org/2000/svg';
const PALETTE = ['#1f6f78', '#e07a1f', '#6a4fb3', '#2f80ed', '#c2185b', '#3f8f3f', '#8d6e63', '#00838f', '#9e9d24', '#5c6bc0'];

function svg(tag, attrs) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  return el;
}

/** niceStep returns a round tick step covering max in about n ticks. */
function niceStep(max, n) {
  const raw = max / n;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

export class Chart {
  /**
   * @param {string} title
   * @param {{unit?: string, fmt?: (v:number)=>string, spanSec?: number}} opts
   */
  constructor(title, opts = {}) {
    this.unit = opts.unit || '';
    this.fmt = opts.fmt || (v => (v >= 100 ? Math.round(v) : +v.toFixed(v < 10 ? 2 : 1)).toLocaleString());
    this.spanSec = opts.spanSec || 120;
    this.empty = opts.empty || 'waiting for data…';
    this.series = new Map(); // name → {color, points: [[t, v]]}
    this.el = document.createElement('div');
    this.el.className = 'chart';
    this.head = document.createElement('div');
    this.head.className = 'chart-head';
    const h3 = document.createElement('h3');
    h3.textContent = title;
    this.head.append(h3);
    this.svg = svg('svg', { viewBox: '0 0 600 190', role: 'img', 'aria-label': title });
    this.legend = document.createElement('div');
    this.legend.className = 'legend';
    this.el.append(this.head, this.svg, this.legend);
    this.colors = new Map();
    this.draw();
  }

  color(name) {
    if (!this.colors.has(name)) this.colors.set(name, PALETTE[this.colors.size % PALETTE.length]);
    return this.colors.get(name);
  }

  /** push adds one value per series at time t (ms); missing series get nothing. */
  push(t, values) {
    for (const [name, v] of Object.entries(values)) {
      if (v === null || v === undefined || Number.isNaN(v)) continue;
      let s = this.series.get(name);
      if (!s) { s = { points: [] }; this.series.set(name, s); }
      s.points.push([t, v]);
    }
    const cut = t - this.spanSec * 1000;
    for (const s of this.series.values()) while (s.points.length && s.points[0][0] < cut) s.points.shift();
    this.now = t;
    this.draw();
  }

  reset() { this.series.clear(); this.colors.clear(); this.draw(); }

  draw() {
    const W = Math.max(280, Math.round(this.svg.clientWidth) || 600), H = 190, L = 46, R = 8, T = 8, B = 20;
    const g = this.svg;
    g.setAttribute('viewBox', `0 0 ${W} ${H}`);
    while (g.firstChild) g.firstChild.remove();
    const now = this.now || Date.now();
    // Show what we have: from the first point (at least 30 s) up to spanSec.
    let first = now;
    for (const s of this.series.values()) if (s.points.length) first = Math.min(first, s.points[0][0]);
    const span = Math.min(this.spanSec, Math.max(30, Math.ceil((now - first) / 1000 / 30) * 30));
    const t0 = now - span * 1000;
    let max = 0;
    for (const s of this.series.values()) for (const [, v] of s.points) max = Math.max(max, v);
    const step = max > 0 ? niceStep(max, 4) : 1;
    const top = max > 0 ? Math.ceil(max / step) * step : 1;
    const x = t => L + (W - L - R) * (t - t0) / (now - t0);
    const y = v => T + (H - T - B) * (1 - v / top);
    for (let v = 0; v <= top + 1e-9; v += step) {
      g.append(svg('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      const lab = svg('text', { class: 'axis', x: L - 6, y: y(v) + 4, 'text-anchor': 'end' });
      lab.textContent = this.fmt(v);
      g.append(lab);
    }
    for (const sec of [span, span / 2, 0]) {
      const lab = svg('text', { class: 'axis', x: x(now - sec * 1000), y: H - 4, 'text-anchor': sec === 0 ? 'end' : sec === span ? 'start' : 'middle' });
      lab.textContent = sec === 0 ? 'now' : `−${sec >= 60 && sec % 60 === 0 ? sec / 60 + ' min' : sec + ' s'}`;
      g.append(lab);
    }
    let any = false;
    const names = [...this.series.keys()].sort();
    for (const name of names) {
      const s = this.series.get(name);
      if (!s.points.length) continue;
      any = true;
      const d = s.points.map(([t, v], i) => (i ? 'L' : 'M') + x(t).toFixed(1) + ' ' + y(v).toFixed(1)).join(' ');
      g.append(svg('path', { class: 'line', d, stroke: this.color(name), 'vector-effect': 'non-scaling-stroke' }));
    }
    if (!any) {
      const t = svg('text', { class: 'nodata', x: W / 2, y: H / 2, 'text-anchor': 'middle' });
      t.textContent = this.empty;
      g.append(t);
    }
    this.legend.replaceChildren(...names.filter(n => this.series.get(n).points.length).map(n => {
      const s = this.series.get(n);
      const span = document.createElement('span');
      const i = document.createElement('i');
      i.style.background = this.color(n);
      span.append(i, `${n} `);
      const b = document.createElement('b');
      b.textContent = this.fmt(s.points[s.points.length - 1][1]) + (this.unit ? ' ' + this.unit : '');
      span.append(b);
      return span;
    }));
  }
}
