package main

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/koipond/koipond/deploy/supervise"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/wire"
)

// CPU per request: M koi, each holding a websocket and calling
// conversations.history (42 messages, about 6.6 KB, nothing read from the
// reply) once per --history-every on average; the school's CPU-seconds
// per 10,000 calls beside the bare Go loop, k6 and Locust getting the
// same replies from the same pond in the same run.

// historyChannel and historyLimit are the call: #general's newest 42
// messages, the demo's limit.
const (
	historyChannel = "C000000"
	historyLimit   = "42"
	historyForm    = "channel=" + historyChannel + "&limit=" + historyLimit
)

// historySet: boot as the busy set; one behavior, conversations.history,
// without post_actions, at frequency 1 (the time scale sets the period).
const historySet = `{
  "boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
  "behaviors": {"history": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "conversations.history",
    "args": {"channel": "` + historyChannel + `", "limit": "` + historyLimit + `"}}}]}}}`

// k6Script is the k6 equivalent of historySet: each VU (user i) calls
// rtm.connect, holds the websocket it names and, from a random phase, calls
// conversations.history every EVERY_MS, decoding the reply to check ok.
const k6Script = `import http from 'k6/http';
import ws from 'k6/ws';

const BASE = __ENV.POND_BASE;
const EVERY = Number(__ENV.EVERY_MS);
const HOLD = Number(__ENV.HOLD_MS);
const BODY = __ENV.FORM;

export const options = {
  scenarios: { koi: { executor: 'per-vu-iterations', vus: Number(__ENV.VUS), iterations: 1, maxDuration: __ENV.MAX_DURATION } },
};

export default function () {
  const headers = { Authorization: 'Bearer xoxp-pond-' + (__VU - 1), 'Content-Type': 'application/x-www-form-urlencoded' };
  const rc = http.post(BASE + '/api/rtm.connect', '', { headers: headers });
  if (rc.status !== 200 || rc.json('ok') !== true) { return; }
  ws.connect(rc.json('url'), {}, function (socket) {
    const call = function () {
      const r = http.post(BASE + '/api/conversations.history', BODY, { headers: headers });
      if (r.status !== 200 || r.json('ok') !== true) { console.error('history: HTTP ' + r.status); }
    };
    socket.on('open', function () {
      socket.setTimeout(function () { call(); socket.setInterval(call, EVERY); }, Math.random() * EVERY);
      socket.setTimeout(function () { socket.close(); }, HOLD);
    });
  });
}
`

// recordedK6Per10k is k6 v1.8.1's CPU-seconds per 10,000 of these calls
// as issue 14 recorded them (2,000 clients, on this machine, same pond).
const recordedK6Per10k = 7.2

// historyResult is what one contender measured.
type historyResult struct {
	rate, per10k, cpuPct float64
	calls, bad           uint64
	load                 string
}

// history keeps the school's figures for the rows after it.
var history struct {
	school historyResult
	ran    bool
}

// phaseHistory: M koi calling conversations.history every --history-every.
func (h *harness) phaseHistory() error {
	n, every := h.historyKoi, h.historyEvery
	scale := 60 / every.Seconds()
	logf("== CPU per request: %d koi, conversations.history (%s) every %v on average (time scale %.2f), no post_actions", n, historyForm, every, scale)
	h.k.resetSwitch()
	p, _, err := h.startSchool(n)
	if err != nil {
		return err
	}
	defer h.stopSchool(p)
	h.k.setAssignments([]wire.Assignment{{Run: "history", From: 0, To: n, Ramp: h.densityRamp, Spec: h.spec("history", h.historyHash, scale)}})
	if _, _, err := waitStats(h.ctx, h.pondBase, 50*time.Millisecond, 180*time.Second, func(s pond.Stats) bool { return s.WebsocketsOpen >= int64(n) }); err != nil {
		return fmt.Errorf("waiting for %d websockets: %v\n%s", n, err, supervise.Tail(p.Log, 20))
	}
	// A full period or more, so every koi is past its first call.
	if !sleepCtx(h.ctx, max(h.settle, every+2*time.Second)) {
		return h.ctx.Err()
	}
	r, err := h.historyWindow(p)
	if err != nil {
		return err
	}
	rss, _, _ := rssKiB(p.Pid())
	history.school, history.ran = r, true
	logf("school: %d conversations.history calls (non-200: %d) = %.0f/s; %.1f%% of a core → %.3f CPU-s per 10,000 calls; RSS %.1f MiB; load %s",
		r.calls, r.bad, r.rate, r.cpuPct, r.per10k, mib(rss), r.load)
	h.row(fmt.Sprintf("cpu/request: school, %d koi, conversations.history every %v", n, every), "≤ 2.0 CPU-s per 10,000",
		fmt.Sprintf("%.3f (%.0f calls/s, %.1f%% of a core, RSS %.1f MiB; load %s)", r.per10k, r.rate, r.cpuPct, mib(rss), r.load), r.per10k <= 2.0)
	return nil
}

// phaseHistoryBare: the bare loop, same calls at the school's rate.
func (h *harness) phaseHistoryBare() error {
	rate := history.school.rate
	if rate == 0 {
		rate = float64(h.historyKoi) / h.historyEvery.Seconds()
		h.notes = append(h.notes, "history bare loop ran at koi/every (the history phase did not run)")
	}
	warm := 5 * time.Second
	total := warm + h.measure + 5*time.Second
	logf("== bare Go loop: %d goroutines, conversations.history at %.0f calls/s total, %v", h.historyKoi, rate, total)
	p, err := startProc("bare loop (history)", filepath.Join(h.tmp, "bare-history.log"), h.self, "bare",
		"--base", h.pondBase, "--n", strconv.Itoa(h.historyKoi), "--rate", strconv.FormatFloat(rate, 'f', 1, 64),
		"--method", "conversations.history", "--form", historyForm, "--duration", total.String())
	if err != nil {
		return err
	}
	defer stop(p, 5*time.Second)
	if !sleepCtx(h.ctx, warm) {
		return h.ctx.Err()
	}
	if p.Exited() {
		return fmt.Errorf("bare loop exited:\n%s", supervise.Tail(p.Log, 20))
	}
	r, err := h.historyWindow(p)
	if err != nil {
		return err
	}
	select {
	case <-p.Done():
	case <-time.After(total):
	}
	logf("bare: %d calls (non-200: %d) = %.0f/s; %.1f%% of a core → %.3f CPU-s per 10,000 calls; load %s; its own report: %s",
		r.calls, r.bad, r.rate, r.cpuPct, r.per10k, r.load, strings.TrimSpace(supervise.Tail(p.Log, 1)))
	h.info("cpu/request: bare Go loop, same calls", fmt.Sprintf("%.3f CPU-s per 10,000 (%.0f calls/s, %.1f%% of a core; load %s)", r.per10k, r.rate, r.cpuPct, r.load))
	if history.ran {
		ratio := history.school.per10k / r.per10k
		h.row("cpu/request: school ÷ bare loop", "≤ 2×", fmt.Sprintf("%.2f×", ratio), ratio <= 2)
	}
	return nil
}

// peer is a standard load tool run beside the school with the equivalent
// of historySet: its name and binary, its script (written to file under
// the work directory), how to run it for hold, and how long it takes to
// have every user calling.
type peer struct {
	name, bin, script, file string
	env                     []string
	argv                    func(script string, hold time.Duration) []string
	warm                    time.Duration
	// skip says how to get the tool when bin is "".
	skip string
	// recorded is the tool's CPU-s per 10,000 calls as issue 14 recorded
	// it (0: none), shown, not judged, when the tool is absent.
	recorded float64
}

// binPath returns flag, else name on PATH, else "".
func binPath(flag, name string) string {
	if flag != "" {
		return flag
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return ""
}

// phaseK6: k6 running k6Script at the same rate against the same pond.
func (h *harness) phaseK6() error {
	return h.runPeer(peer{name: "k6", bin: binPath(h.k6, "k6"), script: k6Script, file: "history.k6.js",
		env: []string{"K6_NO_USAGE_REPORT=true"},
		argv: func(script string, hold time.Duration) []string {
			return []string{"run", "--quiet", "-e", "POND_BASE=" + h.pondBase, "-e", "VUS=" + strconv.Itoa(h.historyKoi),
				"-e", "EVERY_MS=" + strconv.FormatInt(h.historyEvery.Milliseconds(), 10), "-e", "HOLD_MS=" + strconv.FormatInt(hold.Milliseconds(), 10),
				"-e", "FORM=" + historyForm, "-e", "MAX_DURATION=" + (hold + time.Minute).String(), script}
		},
		warm:     20 * time.Second, // k6 builds one JS runtime per VU first
		skip:     "give --k6 PATH or K6=PATH to school/bench.sh, or put k6 on PATH. The project never builds or requires k6 (AGPL): build it yourself outside this repository, e.g. `go build -o k6 .` in a checkout of k6's v1.8.1 tag",
		recorded: recordedK6Per10k})
}

// locustScript is the Locust equivalent of historySet.
//
//go:embed history_locustfile.py
var locustScript string

// phaseLocust: Locust (MIT) running locustScript at the same rate against
// the same pond, in one process as k6 runs: the peer where k6 may not be
// built.
func (h *harness) phaseLocust() error {
	return h.runPeer(peer{name: "Locust", bin: binPath(h.locust, "locust"), script: locustScript, file: "history_locustfile.py",
		env: []string{"EVERY_MS=" + strconv.FormatInt(h.historyEvery.Milliseconds(), 10), "FORM=" + historyForm},
		argv: func(script string, hold time.Duration) []string {
			return []string{"-f", script, "--headless", "--only-summary", "--loglevel", "WARNING", "--host", h.pondBase,
				"-u", strconv.Itoa(h.historyKoi), "-r", strconv.Itoa(max(1, h.historyKoi/4)),
				"-t", strconv.Itoa(int(hold.Seconds())) + "s", "--stop-timeout", "5"}
		},
		warm: 20 * time.Second, // 4 s of spawning, then each user's random phase
		skip: "give --locust PATH or LOCUST=PATH to school/bench.sh, or put locust on PATH: on Debian `apt-get install python3-locust python3-websocket`, elsewhere `pip install locust websocket-client`"})
}

// runPeer runs t's script for a warm-up and h.measure and reports its
// CPU-seconds per 10,000 calls beside the school's.
func (h *harness) runPeer(t peer) error {
	figure := fmt.Sprintf("cpu/request: %s, same script", t.name)
	if t.bin == "" {
		msg := fmt.Sprintf("%s row skipped: no %s binary (%s)", t.name, t.name, t.skip)
		logf("%s", msg)
		h.info(figure, "skipped: no binary (see note)")
		h.notes = append(h.notes, msg)
		if t.recorded > 0 && history.ran {
			// Only a pointer: another day, another load; not a verdict.
			h.info(fmt.Sprintf("  school ÷ %s as recorded in issue 14 (%.1f CPU-s per 10,000; not measured here)", t.name, t.recorded),
				fmt.Sprintf("%.2f× (target ≤ 0.33×)", history.school.per10k/t.recorded))
		}
		return nil
	}
	if fi, err := os.Stat(t.bin); err != nil || fi.IsDir() {
		return fmt.Errorf("%s binary %q: not a file", t.name, t.bin)
	}
	script := filepath.Join(h.tmp, t.file)
	if err := os.WriteFile(script, []byte(t.script), 0o644); err != nil {
		return err
	}
	hold := t.warm + h.measure + 5*time.Second
	logf("== %s (%s): %d users, conversations.history every %v, %v", t.name, t.bin, h.historyKoi, h.historyEvery, hold)
	p, err := startProcEnv(t.name, filepath.Join(h.tmp, strings.ToLower(t.name)+".log"), t.env, append([]string{t.bin}, t.argv(script, hold)...)...)
	if err != nil {
		return err
	}
	defer stop(p, 10*time.Second)
	if !sleepCtx(h.ctx, t.warm) {
		return h.ctx.Err()
	}
	if p.Exited() {
		return fmt.Errorf("%s exited early (%v):\n%s", t.name, p.Err(), supervise.Tail(p.Log, 20))
	}
	st, _ := supervise.PondStats(h.ctx, h.pondBase)
	r, err := h.historyWindow(p)
	if err != nil {
		return err
	}
	rss, _, _ := rssKiB(p.Pid())
	logf("%s: %d calls (non-200: %d) = %.0f/s; %.1f%% of a core → %.3f CPU-s per 10,000 calls; RSS %.1f MiB; pond websockets_open %d at the start of the window; load %s",
		t.name, r.calls, r.bad, r.rate, r.cpuPct, r.per10k, mib(rss), st.WebsocketsOpen, r.load)
	h.info(figure, fmt.Sprintf("%.3f CPU-s per 10,000 (%.0f calls/s, %.1f%% of a core, RSS %.1f MiB, %d websockets open; load %s)",
		r.per10k, r.rate, r.cpuPct, mib(rss), st.WebsocketsOpen, r.load))
	if history.ran && r.per10k > 0 {
		ratio := history.school.per10k / r.per10k
		h.row("cpu/request: school ÷ "+t.name, "≤ 1/3 (0.33×)", fmt.Sprintf("%.2f×", ratio), ratio <= 1.0/3)
	}
	return nil
}

// historyWindow measures p over h.measure and counts the
// conversations.history calls pond answered meanwhile.
func (h *harness) historyWindow(p *supervise.Proc) (historyResult, error) {
	var r historyResult
	s0, err := supervise.PondStats(h.ctx, h.pondBase)
	if err != nil {
		return r, err
	}
	w, err := h.cpuWindow(p, h.measure)
	if err != nil {
		return r, err
	}
	s1, err := supervise.PondStats(h.ctx, h.pondBase)
	if err != nil {
		return r, err
	}
	ok0, bad0 := supervise.Calls(s0, "conversations.history")
	ok1, bad1 := supervise.Calls(s1, "conversations.history")
	r.calls, r.bad = ok1-ok0, bad1-bad0
	if r.calls == 0 {
		return r, errors.New("no conversations.history calls reached pond in the window")
	}
	r.rate = float64(r.calls) / w.secs
	r.per10k = w.cpu / float64(r.calls) * 10000
	r.cpuPct = 100 * w.cpu / w.secs
	r.load = w.load0 + " → " + w.load1
	return r, nil
}
