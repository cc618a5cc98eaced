package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/keeper/contract"
)

// progressSample is what one poll of a waited-on run shows: the run view
// and its request rates over the last seconds, or how long the keeper has
// been unreachable.
type progressSample struct {
	// Elapsed is the time since the wait began.
	Elapsed time.Duration
	// Run is the run's view (nil while the keeper is unreachable).
	Run *runView
	// Rate and ErrRate are requests and failed requests per second.
	Rate, ErrRate float64
	// Top is the most frequent failure reason of the window ("" if none),
	// with its key and count.
	TopKey, Top string
	TopCount    uint64
	// Down is how long the keeper has been unreachable (0: it answers);
	// DownErr is the last error.
	Down    time.Duration
	DownErr error
}

// progressPrinter shows a wait's progress: Update with each poll, Event
// for a line that must stay in the log (a guardrail acted), Finish once at
// the end. The terminal one redraws one line in place; the plain one
// writes a full line now and then and on every change.
type progressPrinter interface {
	Update(s progressSample)
	Event(line string)
	Finish()
}

var (
	_ progressPrinter = (*ttyProgress)(nil)
	_ progressPrinter = (*lineProgress)(nil)
)

// newProgress returns the printer for w: one line redrawn in place when w
// is a terminal, else a full line every `every` and on changes.
func newProgress(w io.Writer, every time.Duration) progressPrinter {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return &ttyProgress{w: w, width: func() int {
			if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
				return cols
			}
			return 80
		}}
	}
	return &lineProgress{w: w, every: every}
}

// progressLine is the one line of progress, e.g.
// "  1m05s  running  98/100 koi connected  412.3 req/s  0.20 errors/s  thresholds 2 pass, 1 FAIL  top error: api:chat.postMessage not_authed ×12".
func progressLine(s progressSample) string {
	el := fmt.Sprintf("%6s", s.Elapsed.Round(time.Second))
	if s.Down > 0 {
		line := el + "  keeper unreachable, retrying"
		if s.Down >= time.Second {
			line = fmt.Sprintf("%s  keeper unreachable for %s, retrying", el, s.Down.Round(time.Second))
		}
		if s.DownErr != nil {
			line += " (" + clean(rootCause(s.DownErr), 60) + ")"
		}
		return line
	}
	if s.Run == nil {
		return el + "  waiting for the keeper"
	}
	v := s.Run
	line := fmt.Sprintf("%s  %s  %d/%d koi connected  %.1f req/s  %.2f errors/s", el, v.State, v.KoiNow.Connected, v.Koi, s.Rate, s.ErrRate)
	if t := thresholdCounts(v.LiveNow); t != "" {
		line += "  thresholds " + t
	}
	if f := fidelityWord(v.Fidelity); f != "" {
		line += "  fidelity " + f
	}
	if s.Top != "" {
		line += fmt.Sprintf("  top error: %s %s ×%d", clean(s.TopKey, 40), clean(s.Top, 40), s.TopCount)
	}
	return line
}

// thresholdCounts counts live threshold verdicts: "2 pass, 1 FAIL, 1 no data".
func thresholdCounts(live []api.LiveThresholdView) string {
	order := []string{api.LivePass, api.LiveFail, api.LiveNoData, contract.LiveArming}
	label := map[string]string{api.LivePass: "pass", api.LiveFail: "FAIL", api.LiveNoData: "no data", contract.LiveArming: "arming"}
	n := map[string]int{}
	for _, l := range live {
		st := l.State
		if label[st] == "" {
			st = clean(st, 20)
			label[st] = st
			order = append(order, st)
		}
		n[st]++
	}
	var parts []string
	for _, st := range order {
		if n[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[st], label[st]))
			n[st] = 0
		}
	}
	return strings.Join(parts, ", ")
}

// progressKey is what makes the plain printer write at once: the run's
// state, each threshold's verdict and whether the keeper answers.
func progressKey(s progressSample) string {
	if s.Down > 0 || s.Run == nil {
		return "down"
	}
	var b strings.Builder
	b.WriteString(string(s.Run.State))
	b.WriteString("|fidelity " + fidelityWord(s.Run.Fidelity))
	for _, l := range s.Run.LiveNow {
		b.WriteString("|" + l.Key + " " + l.Expr + "=" + l.State)
	}
	return b.String()
}

// ttyProgress redraws one line in place on a terminal: carriage return,
// the line cut to the terminal's width, clear to the end of the line. No
// clearing before writing, so nothing flickers.
type ttyProgress struct {
	w     io.Writer
	width func() int
	line  string // the line on screen, "" when none
}

// Update redraws the line.
func (p *ttyProgress) Update(s progressSample) {
	p.line = fit(progressLine(s), p.width()-1)
	fmt.Fprintf(p.w, "\r%s\x1b[K", p.line)
}

// Event writes a line above the progress line, which it redraws.
func (p *ttyProgress) Event(line string) {
	fmt.Fprintf(p.w, "\r%s\x1b[K\n", line)
	if p.line != "" {
		fmt.Fprint(p.w, p.line)
	}
}

// Finish ends the progress line, leaving it on screen.
func (p *ttyProgress) Finish() {
	if p.line != "" {
		fmt.Fprintln(p.w)
		p.line = ""
	}
}

// lineProgress writes full lines for logs and pipes: the first sample, then
// one every `every`, and at once when the run's state, a threshold's
// verdict or the keeper's reachability changes; under each, the thresholds
// failing and those that just stopped failing.
type lineProgress struct {
	w       io.Writer
	every   time.Duration
	printed bool
	last    time.Duration // Elapsed of the last line written
	key     string
	verdict map[string]string // threshold → verdict last written
}

// Update writes a line when due.
func (p *lineProgress) Update(s progressSample) {
	key := progressKey(s)
	if p.printed && key == p.key && s.Elapsed-p.last < p.every {
		return
	}
	fmt.Fprintln(p.w, progressLine(s))
	if s.Run != nil && s.Down == 0 {
		// Say which thresholds fail (and for how long) and which stopped
		// failing, not only how many pass.
		if p.verdict == nil {
			p.verdict = map[string]string{}
		}
		for _, l := range s.Run.LiveNow {
			id := l.Key + " " + l.Expr
			if l.State == api.LiveFail || p.verdict[id] == api.LiveFail {
				fmt.Fprintf(p.w, "        %s\n", liveLine(l))
			}
			p.verdict[id] = l.State
		}
	}
	p.printed, p.last, p.key = true, s.Elapsed, key
}

// Event writes the line.
func (p *lineProgress) Event(line string) { fmt.Fprintln(p.w, line) }

// Finish does nothing: every line is whole.
func (p *lineProgress) Finish() {}

// fit cuts s to width columns (runes), ending in "…" when cut.
func fit(s string, width int) string {
	if width < 1 {
		width = 1
	}
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}

// fitMiddle cuts s to width runes by replacing its middle with "…", so
// both the kind prefix and the distinctive end of a long key stay.
func fitMiddle(s string, width int) string {
	r := []rune(s)
	if len(r) <= width || width < 3 {
		return s
	}
	head := (width - 1) / 2
	tail := width - 1 - head
	return string(r[:head]) + "…" + string(r[len(r)-tail:])
}

// clean makes text from the network safe for a terminal line: control
// characters (escape sequences, carriage returns, newlines) become spaces
// and it is cut to max runes.
func clean(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
	return fit(s, max)
}

// rootCause is the innermost error's text: "connection refused" rather
// than the whole chain of the request.
func rootCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// topReason is the most frequent failure reason over a summary's keys.
func topReason(m *api.MetricsSummary) (key, reason string, count uint64) {
	for _, k := range m.Keys {
		for _, r := range k.Reasons {
			if r.Count > count {
				key, reason, count = k.Key, r.Reason, r.Count
			}
		}
	}
	return key, reason, count
}

// keeperUnavailable reports whether err means the keeper could not be
// reached or said it is not available (connection refused or reset, the
// answer cut off, no answer in time, 502/503/504), as opposed to a refusal.
// The client may already mark such errors with errUnavailable.
func keeperUnavailable(err error) bool {
	var ae *apiError
	var ue *url.Error
	switch {
	case err == nil:
		return false
	case errors.Is(err, errUnavailable):
		return true
	case errors.As(err, &ae):
		return ae.Status == http.StatusBadGateway || ae.Status == http.StatusServiceUnavailable || ae.Status == http.StatusGatewayTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// The connection closed under the request (a keeper shutting
		// down), not a body that failed to decode.
		return errors.As(err, &ue)
	}
	return unreachable(err)
}

// patientKeeper calls the keeper and rides out a restart: while the keeper
// is unreachable it retries with jittered backoff for up to limit, telling
// onDown how long it has been, then gives up with an error wrapping
// errUnavailable.
type patientKeeper struct {
	cf *clientFlags
	// limit bounds one outage (--wait-unavailable).
	limit time.Duration
	// callTimeout bounds one call, so a hung keeper counts as down.
	callTimeout time.Duration
	// onDown is told of each failed attempt (may be nil).
	onDown func(down time.Duration, err error)
}

// retry backoff bounds.
const (
	retryFirst = 250 * time.Millisecond
	retryMax   = 5 * time.Second
)

// call is clientFlags.call with retries while the keeper is unavailable.
func (p *patientKeeper) call(ctx context.Context, method, path string, out any) error {
	var since time.Time
	backoff := retryFirst
	for {
		cctx, cancel := context.WithTimeout(ctx, p.callTimeout)
		err := p.cf.call(cctx, method, path, nil, out)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !keeperUnavailable(err) {
			return err
		}
		if since.IsZero() {
			since = time.Now()
		}
		down := time.Since(since)
		if down >= p.limit {
			return fmt.Errorf("%w: the keeper at %s has not answered for %s (--wait-unavailable %s): %w",
				errUnavailable, p.cf.keeper, down.Round(time.Second), p.limit, err)
		}
		if p.onDown != nil {
			p.onDown(down, err)
		}
		// Full jitter over [backoff/2, backoff), never past the limit.
		d := min(backoff/2+rand.N(backoff/2), p.limit-down)
		backoff = min(2*backoff, retryMax)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// waitOpts are the --wait settings of a command.
type waitOpts struct {
	// unavailable bounds how long the keeper may be unreachable.
	unavailable time.Duration
	// every is how often the plain (non-terminal) printer writes a line.
	every time.Duration
}

// reportWait bounds the wait for a stopped run's final report.
const reportWait = 2 * time.Minute

// waitRun shows a run's progress until it stops, then waits for its final
// report, prints it and returns its verdict. It rides out keeper restarts
// for up to wo.unavailable.
func waitRun(ctx context.Context, cf *clientFlags, id string, wo waitOpts, stdout, progress io.Writer) error {
	return waitRunWith(ctx, cf, id, wo, newProgress(progress, wo.every), stdout, progress)
}

// waitRunWith is waitRun with the progress printer given.
func waitRunWith(ctx context.Context, cf *clientFlags, id string, wo waitOpts, pp progressPrinter, stdout, progress io.Writer) error {
	base := "/api/v1/runs/" + url.PathEscape(id)
	start := time.Now()
	pk := &patientKeeper{cf: cf, limit: wo.unavailable, callTimeout: 15 * time.Second, onDown: func(down time.Duration, err error) {
		pp.Update(progressSample{Elapsed: time.Since(start), Down: max(down, time.Millisecond), DownErr: err})
	}}
	defer pp.Finish()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	seenActions := -1
	for {
		var v runView
		if err := pk.call(ctx, "GET", base, &v); err != nil {
			return err
		}
		if seenActions < 0 {
			// Actions taken before the wait began are in the report.
			seenActions = len(v.GuardActions)
		}
		for _, a := range v.GuardActions[min(seenActions, len(v.GuardActions)):] {
			pp.Event(fmt.Sprintf("        GUARDRAIL %q: %s was %s → %s: %s", clean(a.Rule, 60), a.Condition,
				formatObserved(a.Observed, a.Unit), a.Action, clean(a.Detail, 120)))
		}
		seenActions = len(v.GuardActions)
		if v.State == api.RunStopped {
			pp.Finish()
			fmt.Fprintf(progress, "run %s stopped after %s: %s\n", id, time.Since(start).Round(time.Second), v.EndReason)
			break
		}
		var m api.MetricsSummary
		if err := pk.call(ctx, "GET", base+"/metrics?window=5s", &m); err != nil {
			return err
		}
		s := progressSample{Elapsed: time.Since(start), Run: &v}
		s.Rate, s.ErrRate = requestRates(&m)
		s.TopKey, s.Top, s.TopCount = topReason(&m)
		pp.Update(s)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	var rep api.Report
	giveUp := time.Now().Add(reportWait)
	for {
		rep = api.Report{}
		if err := pk.call(ctx, "GET", base+"/report", &rep); err != nil {
			return err
		}
		if rep.Final {
			break
		}
		if time.Now().After(giveUp) {
			fmt.Fprintf(progress, "the final report is not written after %v (schools not confirming the stop?): judging the provisional one\n", reportWait)
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	pp.Finish()
	if cf.json {
		if err := writeJSON(stdout, &rep); err != nil {
			return err
		}
	} else {
		printReport(stdout, &rep)
	}
	return verdict(&rep, progress)
}
