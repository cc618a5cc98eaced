// lib.js: the keeper API client, DOM helpers, formatting and the shared
// live state (the last /status, the keeper's clock offset, the role).

const TOKEN_KEY = 'koipond.token';

/** APIError is a failed API call: status 0 means the keeper did not answer. */
export class APIError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status; this.code = code; this.field = field || '';
  }
}

export const live = {
  status: null,        // last GET /api/v1/status
  offsetMS: 0,         // keeper clock − browser clock
  reachable: true,
  role: 'admin',       // what we think the token may do (narrowed on 403)
  listeners: new Set(),
};

export function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }
export function setToken(t) { t ? sessionStorage.setItem(TOKEN_KEY, t) : sessionStorage.removeItem(TOKEN_KEY); }

const roleRank = { viewer: 1, operator: 2, admin: 3 };
export function allowed(need) { return (roleRank[live.role] || 0) >= (roleRank[need] || 0); }

/** applyRole disables every control marked data-role the role may not use. */
export function applyRole(root = document) {
  for (const el of root.querySelectorAll('[data-role]')) {
    const ok = allowed(el.dataset.role);
    if (!ok) { el.disabled = true; el.title = `Your token is ${live.role}; this needs ${el.dataset.role}.`; }
    else if (el.title.startsWith('Your token is')) el.title = '';
  }
}

export const events = new EventTarget();

/** api calls the keeper and returns the decoded JSON or throws APIError. */
export async function api(method, path, body) {
  const headers = { 'Accept': 'application/json' };
  // Every write says JSON, with a body or without: the keeper refuses
  // writes of any other type (no cross-site form can send this one).
  if (body !== undefined || (method !== 'GET' && method !== 'HEAD')) headers['Content-Type'] = 'application/json';
  const t = token();
  if (t) headers['Authorization'] = 'Bearer ' + t;
  let resp;
  try {
    resp = await fetch('/api/v1' + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  } catch (e) {
    throw new APIError(0, 'unreachable', 'keeper unreachable: ' + e.message);
  }
  let data = null;
  const text = await resp.text();
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    const e = data && data.error;
    const err = new APIError(resp.status, e ? e.code : 'http_' + resp.status,
      e ? e.message : `HTTP ${resp.status} ${resp.statusText}`, e && e.field);
    if (resp.status === 401) events.dispatchEvent(new CustomEvent('unauthorized', { detail: err }));
    if (resp.status === 403) events.dispatchEvent(new CustomEvent('forbidden', { detail: { err, method, path } }));
    if ((resp.status === 502 || resp.status === 504) && !e) err.code = 'unreachable';
    throw err;
  }
  return data;
}

/** h builds an element: h('a.cls#id', {href}, children…). */
export function h(tag, attrs, ...kids) {
  const m = tag.match(/^([a-z0-9]+)?((?:[.#][\w-]+)*)$/i);
  const el = document.createElement(m[1] || 'div');
  for (const part of (m[2] || '').match(/[.#][\w-]+/g) || []) {
    if (part[0] === '.') el.classList.add(part.slice(1)); else el.id = part.slice(1);
  }
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) { kids.unshift(attrs); attrs = null; }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, kids);
  return el;
}

function append(el, kids) {
  for (const k of kids) {
    if (k === null || k === undefined || k === false) continue;
    if (Array.isArray(k)) append(el, k);
    else el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
}

export function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }

export function toast(msg, bad = false) {
  const t = document.getElementById('toast');
  t.textContent = msg; t.className = 'toast' + (bad ? ' bad' : ''); t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, bad ? 8000 : 3500);
}

// --- formatting

export function fmtNum(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  if (Math.abs(n) >= 10000) return Math.round(n).toLocaleString();
  return n.toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}
export function fmtRate(n) { return n === null || n === undefined ? '–' : n < 10 ? fmtNum(n, 1) : fmtNum(n, 0); }
export function fmtMS(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms < 1) return ms.toFixed(2) + ' ms';
  if (ms < 1000) return (ms < 10 ? ms.toFixed(1) : Math.round(ms)) + ' ms';
  return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
}
export function fmtPct(x) { return x === null || x === undefined ? '–' : (x === 0 ? '0' : x < 0.1 ? x.toFixed(2) : x.toFixed(1)) + ' %'; }

export function isZeroTime(s) { return !s || s.startsWith('0001-'); }

/** keeperNow is the keeper's clock as best we know it. */
export function keeperNow() { return Date.now() + live.offsetMS; }

export function fmtDur(ms) {
  if (ms < 0) ms = 0;
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + 's';
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(hr / 24)}d ${hr % 24}h`;
}
export function ago(iso) {
  if (isZeroTime(iso)) return '–';
  const d = keeperNow() - Date.parse(iso);
  return d < 1500 ? 'just now' : fmtDur(d) + ' ago';
}
export function fmtTime(iso) {
  if (isZeroTime(iso)) return '–';
  const d = new Date(iso);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay ? d.toLocaleTimeString([], { hour12: false }) : d.toLocaleString([], { hour12: false });
}
export function fmtUTC(ms) { return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC'); }

export function stateChip(state) {
  const cls = { running: 'run', paused: 'warn', stopped: 'bad', pending: '', done: 'ok', cancelled: 'bad',
    live: 'ok', late: 'warn', lost: 'bad' }[state] ?? '';
  return h('span.chip' + (cls ? '.' + cls : ''), { 'data-state': state }, h('span.dot'), state);
}

// --- metrics

/**
 * isRequestKey says whether a metric key counts requests koi sent: api:*,
 * http:*, connect:* (boot's connect steps) and ws:* (sends, awaits and
 * dials), not connection closes
 * (ws:close:*, ws:disconnect), frames (event:*) or sequences (behavior:*,
 * boot, formation:*, on_connect), whose steps are counted under their
 * request key. Keep in step with metrics.IsRequestKey.
 */
export function isRequestKey(key) {
  if (key.startsWith('api:') || key.startsWith('http:') || key.startsWith('connect:')) return true;
  return key.startsWith('ws:') && key !== 'ws:disconnect' && !key.startsWith('ws:close:');
}

/** targetText says where a run's koi go: its API base and/or websocket URL. */
export function targetText(t) {
  const parts = [];
  if (t && t.api_base) parts.push(t.api_base);
  if (t && t.websocket_url) parts.push(t.websocket_url + (t.websocket_subprotocols && t.websocket_subprotocols.length ? ` (${t.websocket_subprotocols.join(', ')})` : ''));
  return parts.length ? parts.join(' and ') : 'the websocket URL boot gives';
}

/** summarize sums a run's request keys (see isRequestKey) into one row. */
export function summarize(keys) {
  let count = 0, fails = 0, rate = 0, p95 = null;
  for (const k of keys || []) {
    if (!isRequestKey(k.key)) continue;
    count += k.count; fails += k.failures; rate += k.rate_per_sec;
    if (k.p95_ms != null && (p95 === null || k.p95_ms > p95)) p95 = k.p95_ms;
  }
  return { count, fails, rate, errPct: count ? 100 * fails / count : null, p95 };
}

/** parseDiags turns the keeper's "file:line:col: message" lines into objects. */
export function parseDiags(message) {
  const out = [];
  for (const line of String(message || '').split('\n')) {
    if (!line.trim()) continue;
    const m = line.match(/^(.*?):(\d+):(\d+): (.*)$/);
    if (m) out.push({ file: m[1], line: +m[2], col: +m[3], msg: m[4], warn: m[4].startsWith('warning:') });
    else {
      const f = line.match(/^([^\s:]+\.(?:json|jsonc|hujson|yaml|yml)): (.*)$/);
      out.push({ file: f ? f[1] : '', line: 0, col: 0, msg: f ? f[2] : line, warn: line.includes('warning:') });
    }
  }
  return out;
}

/** fieldErrors shows an APIError next to the form field it names. */
export function showFieldError(form, err) {
  for (const el of form.querySelectorAll('.field.invalid')) el.classList.remove('invalid');
  for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
  const box = form.querySelector('.form-error');
  if (box) { box.hidden = true; box.textContent = ''; }
  if (!err) return;
  const f = err.field && form.querySelector(`[data-field="${CSS.escape(err.field)}"]`);
  if (f) {
    const wrap = f.closest('.field');
    wrap.classList.add('invalid');
    const e = wrap.querySelector('.field-error');
    if (e) e.textContent = err.message;
    f.focus();
  } else if (box) {
    box.hidden = false; box.textContent = (err.field ? err.field + ': ' : '') + err.message;
  }
}

export function field(label, input, opts = {}) {
  return h('label.field' + (opts.wide ? '.wide' : ''), h('span', label), input,
    opts.hint ? h('small.muted', opts.hint) : null, h('small.field-error', { 'aria-live': 'polite' }));
}

/** labelCells copies each column's heading onto its cells (data-label),
 * so narrow screens can show rows as cards. */
export function labelCells(table) {
  const heads = [...table.querySelectorAll('thead th')].map(th => th.textContent.trim());
  table.classList.add('cards');
  for (const tr of table.querySelectorAll('tbody tr')) {
    [...tr.children].forEach((td, i) => { if (heads[i] && td.colSpan === 1) td.dataset.label = heads[i]; });
  }
}
