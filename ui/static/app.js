// app.js: the shell. Follows the keeper's status (server-sent events,
// falling back to polling /status every second), keeps the
// header (global switch, Pause and Stop) true to it, routes #/… to pages
// and handles login when the API answers 401.
import { api, live, h, clear, toast, token, setToken, events, applyRole, fmtTime, ago, fmtMS, isZeroTime, keeperNow, APIError } from './lib.js';
import * as runs from './runs.js';
import * as run from './run.js';
import * as report from './report.js';
import * as formations from './formations.js';
import * as behaviors from './behaviors.js';
import * as schools from './schools.js';

const $ = id => document.getElementById(id);
const POLL_MS = 1000;

let page = null;         // {tick(status), destroy()}
let unreachableSince = 0;
let pending = false;     // a switch change is in flight

// --- routing

const routes = [
  [/^#\/runs\/([^/]+)\/report$/, m => report.mount($('main'), decodeURIComponent(m[1])), 'runs'],
  [/^#\/runs\/([^/]+)$/, m => run.mount($('main'), decodeURIComponent(m[1])), 'runs'],
  [/^#\/runs\/?$/, () => runs.mount($('main')), 'runs'],
  [/^#\/formations(?:\/([^/]+))?$/, m => formations.mount($('main'), m[1] && decodeURIComponent(m[1])), 'formations'],
  [/^#\/behaviors(?:\/([^/]+))?$/, m => behaviors.mount($('main'), m[1] && decodeURIComponent(m[1])), 'behaviors'],
  [/^#\/schools\/?$/, () => schools.mount($('main')), 'schools'],
];

function route() {
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
  if (page && page.destroy) page.destroy();
  page = null;
  clear($('main'));
  const hash = location.hash || '#/runs';
  for (const [re, mount, nav] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll('[data-nav]')) {
      a.classList.toggle('active', a.dataset.nav === nav);
      if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    page = mount(m) || null;
    applyRole($('main'));
    if (live.status && page && page.tick) page.tick(live.status);
    return;
  }
  location.hash = '#/runs';
}

// --- the header

function renderSwitch(sw) {
  const top = $('top');
  const state = sw ? sw.state : 'unknown';
  top.className = 'top state-' + (live.reachable ? state : 'unknown');
  $('sw-state').textContent = sw ? state + (live.reachable ? '' : ' (last known)') : 'unknown';
  $('sw-state').dataset.state = state;
  const meta = $('sw-meta');
  if (sw) {
    const who = sw.by ? ` by ${sw.by}` : '';
    const when = isZeroTime(sw.at) ? '' : ` ${ago(sw.at)} (${fmtTime(sw.at)})`;
    meta.textContent = `epoch ${sw.epoch}` + (isZeroTime(sw.at) ? ' · never switched' : ` · ${state === 'running' ? 'running' : state}${who}${when}`);
  } else meta.textContent = '';
  const pause = $('btn-pause'), stop = $('btn-stop');
  const running = state !== 'paused' && state !== 'stopped';
  pause.textContent = running ? 'Pause all' : 'Resume all';
  pause.className = 'big ' + (running ? 'pause' : 'resume');
  pause.setAttribute('aria-label', running ? 'Pause every koi everywhere' : 'Resume every koi everywhere');
  pause.disabled = pending || !sw || !live.reachable;
  stop.textContent = state === 'stopped' ? 'Stopped' : 'Stop all';
  stop.disabled = pending || !sw || !live.reachable || state === 'stopped';
  applyRole($('top'));
  renderStop(sw);
}

function renderStop(sw) {
  const box = $('stop-progress');
  const st = sw && sw.stop;
  if (!sw || sw.state !== 'stopped' || !st) { box.hidden = true; return; }
  box.hidden = false;
  const schoolsByID = new Map(((live.status && live.status.schools) || []).map(s => [s.id, s]));
  const started = Date.parse(st.requested_at);
  const done = sw.stop_complete_ms > 0 || !isZeroTime(st.complete_at);
  const kids = [];
  if (done) {
    kids.push(h('span.title#stop-done', `■ Stop confirmed: every koi is down, ${fmtMS(sw.stop_complete_ms || (Date.parse(st.complete_at) - started))} after the press.`));
  } else {
    kids.push(h('span.title', `Stopping… ${((keeperNow() - started) / 1000).toFixed(1)} s`));
  }
  for (const id of st.expected || []) {
    const ack = st.acks && st.acks[id];
    const late = (st.late || []).includes(id);
    const s = schoolsByID.get(id);
    const ws = s && s.status ? s.status.websockets_open : null;
    if (ack) kids.push(h('span.chip.ok', { 'data-school': id }, h('span.dot'), `${id} ✓ ${fmtMS(Date.parse(ack) - started)}`));
    else kids.push(h('span.chip.pending' + (late ? '.bad' : '.warn'), { 'data-school': id }, h('span.dot'),
      `${id} ${late ? 'late' : 'waiting'}` + (ws != null ? ` · ${ws} websockets open` : '')));
  }
  if (!(st.expected || []).length) kids.push(h('span.muted', 'no school was running koi'));
  box.replaceChildren(...kids);
}

async function setSwitch(state) {
  pending = true;
  renderSwitch(live.status && live.status.switch);
  try {
    const sw = await api('POST', '/control', { state });
    if (live.status) live.status.switch = sw;
    toast(state === 'paused' ? 'Every koi paused: websockets stay open, nothing is sent.' :
      state === 'running' ? 'Every koi resumed.' : 'Stop sent to every school.');
  } catch (e) {
    toast(`Could not ${state === 'running' ? 'resume' : state === 'paused' ? 'pause' : 'stop'}: ${e.message}`, true);
  } finally {
    pending = false;
    renderSwitch(live.status && live.status.switch);
    poll();
  }
}

// --- polling

// applyStatus makes the page show a status from a poll or the stream.
function applyStatus(st) {
  live.status = st;
  setReachable(true);
  if (noWhoami && !token()) $('whoami').replaceChildren(whoLabel());
  $('login').hidden = true;
  renderSwitch(st.switch);
  if (page && page.tick) page.tick(st);
}

// stream reads the keeper's server-sent status events (GET /events) with
// fetch, so the bearer token goes in a header, not the URL. While events
// arrive, poll() only checks the clock offset; when the stream breaks,
// polling carries on and the stream is tried again.
let streaming = false, lastEvent = 0, lastStreamTry = 0;
async function stream() {
  if (streaming || Date.now() - lastStreamTry < 10 * POLL_MS) return;
  streaming = true;
  lastStreamTry = Date.now();
  try {
    const headers = { Accept: 'text/event-stream' };
    if (token()) headers.Authorization = 'Bearer ' + token();
    const resp = await fetch('/api/v1/events', { headers, cache: 'no-store' });
    if (!resp.ok || !resp.body) return;
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const chunk = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = chunk.split('\n').filter(l => l.startsWith('data: ')).map(l => l.slice(6)).join('\n');
        if (!data) continue;
        lastEvent = Date.now();
        applyStatus(JSON.parse(data));
      }
    }
  } catch (e) {
    // fall back to polling; poll() reports reachability
  } finally {
    streaming = false;
  }
}

let timer = 0, inflight = false, lastOffset = 0;
async function poll() {
  clearTimeout(timer);
  if (inflight) { timer = setTimeout(poll, POLL_MS); return; }
  stream();
  const fresh = streaming && Date.now() - lastEvent < 2 * POLL_MS;
  if (fresh && Date.now() - lastOffset < 10 * POLL_MS) { timer = setTimeout(poll, POLL_MS); return; }
  inflight = true;
  try {
    const t0 = Date.now();
    const st = await api('GET', '/status');
    const t1 = Date.now();
    live.offsetMS = Date.parse(st.time) - (t0 + t1) / 2;
    lastOffset = t1;
    applyStatus(st);
  } catch (e) {
    if (e.status === 401) {
      authSeen = true;
      if (noWhoami && !token()) $('whoami').replaceChildren(whoLabel());
      showLogin(token() ? 'That token was refused.' : '');
      setReachable(true);
    } else if (e.status === 0 || e.code === 'unreachable') {
      setReachable(false, e);
    } else {
      setReachable(true);
      toast('status: ' + e.message, true);
    }
    renderSwitch(live.status && live.status.switch);
  } finally {
    inflight = false;
    // While a stop is being confirmed, look five times a second.
    const sw = live.status && live.status.switch;
    const stopping = sw && sw.state === 'stopped' && sw.stop && !(sw.stop_complete_ms > 0) && isZeroTime(sw.stop.complete_at);
    timer = setTimeout(poll, document.hidden ? 5 * POLL_MS : stopping ? POLL_MS / 5 : POLL_MS);
  }
}

function setReachable(ok, err) {
  live.reachable = ok;
  const b = $('unreachable');
  if (ok) { unreachableSince = 0; b.hidden = true; return; }
  if (!unreachableSince) unreachableSince = Date.now();
  b.hidden = false;
  b.textContent = `Keeper unreachable since ${new Date(unreachableSince).toLocaleTimeString([], { hour12: false })} — ` +
    `what you see is the last known state; retrying every second. (${err ? err.message : ''})`;
}

function showLogin(msg) {
  $('login').hidden = false;
  $('login-error').textContent = msg || '';
  if (document.activeElement === document.body) $('login-token').focus();
}

let noWhoami = false, authSeen = false;
function whoLabel() {
  if (token()) return 'signed in with a token';
  return authSeen ? 'signed out' : (live.status ? 'auth off (loopback)' : '');
}

async function whoami() {
  const who = $('whoami');
  try {
    const me = await api('GET', '/whoami');
    live.role = me.role || 'admin';
    who.replaceChildren(`${me.name || 'signed in'} · ${live.role}`);
  } catch (e) {
    // Keepers without /whoami: assume the token may do everything and
    // narrow on the first 403; say what we know after the first status.
    noWhoami = true;
    who.replaceChildren(whoLabel());
  }
  if (token()) who.append(' · ', h('a', { href: '#', onclick: ev => { ev.preventDefault(); setToken(''); live.role = 'admin'; location.reload(); } }, 'sign out'));
  applyRole(document);
}

// --- wiring

events.addEventListener('unauthorized', () => showLogin(token() ? 'That token was refused.' : ''));
events.addEventListener('forbidden', ev => {
  const { path } = ev.detail;
  const operator = /^\/(control|launches|runs\/[^/]+\/(pause|resume|stop))/.test(path);
  live.role = operator ? 'viewer' : (live.role === 'admin' ? 'operator' : live.role);
  applyRole(document);
});

$('login-form').addEventListener('submit', ev => {
  ev.preventDefault();
  setToken($('login-token').value.trim());
  $('login-token').value = '';
  whoami();
  poll();
  route();
});

$('btn-pause').addEventListener('click', () => {
  const st = live.status && live.status.switch && live.status.switch.state;
  setSwitch(st === 'running' ? 'paused' : 'running');
});
$('btn-stop').addEventListener('click', () => $('confirm-stop').showModal());
$('confirm-stop').addEventListener('close', () => {
  if ($('confirm-stop').returnValue === 'stop') setSwitch('stopped');
  $('btn-stop').focus();
});
// Keyboard: Shift+P pauses or resumes, Shift+S opens the stop confirmation
// (never inside a text field).
document.addEventListener('keydown', ev => {
  if (!ev.shiftKey || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.target.closest && ev.target.closest('input, textarea, select, [contenteditable]')) return;
  if (ev.key === 'P' && !$('btn-pause').disabled) { ev.preventDefault(); $('btn-pause').click(); }
  if (ev.key === 'S' && !$('btn-stop').disabled) { ev.preventDefault(); $('btn-stop').click(); }
});
$('btn-pause').title = 'Shift+P';
$('btn-stop').title = 'Shift+S';

window.addEventListener('hashchange', route);
document.addEventListener('visibilitychange', () => { if (!document.hidden) poll(); });
export { APIError };
route();
whoami();
poll();
