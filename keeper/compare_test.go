package keeper

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/school"
)

// pondSet boots koi at pond and has each call auth.test and
// conversations.list once a (scaled) minute.
const pondSet = `{"boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
  "behaviors": {
    "auth": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "auth.test"}}]},
    "list": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "conversations.list", "args": {"limit": "5"}}}]}}}`

// openPond starts a pond on loopback with the given faults.
func openPond(t testing.TB, inject map[string]pond.Fault) *pond.Server {
	t.Helper()
	p, err := pond.Open(context.Background(), pond.Config{Users: 200, Channels: 5, DisableRateLimits: true, Inject: inject})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// openSchool starts a real school polling k at natsURL, with k's school
// credentials.
func openSchool(t testing.TB, k *Keeper, natsURL, id string, capacity int) *school.School {
	t.Helper()
	s, err := school.Open(context.Background(), school.Config{ID: id, NATSURL: natsURL, NATSNKeySeedFile: k.SchoolNKeyFile(), Capacity: capacity})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// pondRun creates a run of koi koi against p at time scale 60 (a behavior
// minute lasts a second), ending after secs seconds (0: always-on).
func pondRun(t testing.TB, k *Keeper, p *pond.Server, name string, koi int, secs float64) *state.Run {
	t.Helper()
	ctx := context.Background()
	if _, err := k.PutBehaviorSet(ctx, "test", "pond", []behaviors.File{{Name: "pond.json", Data: []byte(pondSet)}}); err != nil {
		t.Fatal(err)
	}
	run, err := k.CreateRun(ctx, "test", RunSpec{Name: name, BehaviorSet: "pond", Koi: koi, TimeScale: 60, DurationSecs: secs,
		Target: state.Target{APIBase: p.URL() + "/api", Token: "xoxp-pond-{{.Index}}"}})
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// deref returns *f, or NaN for nil.
func deref(f *float64) float64 {
	if f == nil {
		return math.NaN()
	}
	return *f
}

// finalReport waits for a run's final report.
func finalReport(t testing.TB, k *Keeper, run string, d time.Duration) *state.Report {
	t.Helper()
	var rep *state.Report
	checkFor(t, d, func() error {
		if rep = k.State().Report(nil, run); rep == nil {
			return fmt.Errorf("no final report of %s yet", run)
		}
		return nil
	})
	return rep
}

func TestParseTolerances(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64
	}{{"10%", 0.1}, {"0.1", 0.1}, {" 25 % ", 0.25}, {"0", 0}, {"1000%", 10}} {
		if got, err := ParseTolerance(c.in); err != nil || math.Abs(got-c.want) > 1e-12 {
			t.Errorf("ParseTolerance(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"", "not a percentage"}, {"ten", "not a percentage"}, {"-5%", "outside"}, {"1001%", "outside"}, {"NaN", "not a percentage"}, {"Inf", "not a percentage"},
	} {
		if _, err := ParseTolerance(c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseTolerance(%q): %v, want %q", c.in, err, c.want)
		}
	}
	for _, c := range []struct {
		in   string
		want float64
	}{{"0.5pp", 0.5}, {"0.5%", 0.5}, {"2", 2}} {
		if got, err := ParseErrorTolerance(c.in); err != nil || got != c.want {
			t.Errorf("ParseErrorTolerance(%q) = %v, %v", c.in, got, err)
		}
	}
	for _, in := range []string{"x", "-1pp", "101"} {
		if _, err := ParseErrorTolerance(in); err == nil {
			t.Errorf("ParseErrorTolerance(%q) accepted", in)
		}
	}
}

func f64(v float64) *float64 { return &v }

// Verdicts at the edges of the tolerances: a latency change inside the
// sketches' 1% error is never flagged, even at zero tolerance; error
// rates move in percentage points; fewer calls is a regression except for
// keys counting drops.
func TestCompareKeyVerdicts(t *testing.T) {
	key := func(name string, count uint64, rate, errRate float64, p95 *float64) state.ReportKey {
		return state.ReportKey{Key: name, Count: count, Rate: rate, ErrorRate: errRate, P95: p95}
	}
	verdict := func(kc KeyComparison, stat string) string {
		for _, s := range kc.Stats {
			if s.Stat == stat {
				return s.Verdict
			}
		}
		return "absent"
	}
	for _, c := range []struct {
		name      string
		old, cur  state.ReportKey
		tol       float64
		floor     float64 // MinLatencyDeltaMS
		stat      string
		want, key string
	}{
		// 100 → 101.5 ms is within the two sketches' combined 2% error.
		{"inside sketch error", key("api:a", 10, 1, 0, f64(100)), key("api:a", 10, 1, 0, f64(101.5)), 0, 0, "p95_ms", VerdictSame, VerdictSame},
		// 100 → 103 ms is beyond it.
		{"beyond sketch error", key("api:a", 10, 1, 0, f64(100)), key("api:a", 10, 1, 0, f64(103)), 0, 0, "p95_ms", VerdictRegressed, VerdictRegressed},
		// 100 → 109 ms is inside a 10% tolerance; 100 → 85 is not.
		{"inside tolerance", key("api:a", 10, 1, 0, f64(100)), key("api:a", 10, 1, 0, f64(109)), 0.1, 0, "p95_ms", VerdictSame, VerdictSame},
		{"faster", key("api:a", 10, 1, 0, f64(100)), key("api:a", 10, 1, 0, f64(85)), 0.1, 0, "p95_ms", VerdictImproved, VerdictImproved},
		// Error rates over a million calls: 1% → 1.4% is inside 0.5 pp,
		// 1% → 1.6% is not.
		{"errors inside pp", key("api:a", 1e6, 1e5, 0.01, nil), key("api:a", 1e6, 1e5, 0.014, nil), 0.1, 0, "error_rate", VerdictSame, VerdictSame},
		{"errors beyond pp", key("api:a", 1e6, 1e5, 0.01, nil), key("api:a", 1e6, 1e5, 0.016, nil), 0.1, 0, "error_rate", VerdictRegressed, VerdictRegressed},
		// Throughput over 10 s runs: 20% fewer calls is a regression when
		// beyond counting noise (1000 → 800: 3σ = 127 calls), not when
		// within it (8 → 4: 3σ = 10); 40% more drops is a regression.
		{"less throughput", key("api:a", 1000, 100, 0, nil), key("api:a", 800, 80, 0, nil), 0.1, 0, "rate_per_sec", VerdictRegressed, VerdictRegressed},
		{"fewer calls", key("api:a", 1000, 100, 0, nil), key("api:a", 800, 80, 0, nil), 0.1, 0, "count", VerdictRegressed, VerdictRegressed},
		{"few calls", key("api:a", 8, 0.8, 0, nil), key("api:a", 4, 0.4, 0, nil), 0.1, 0, "rate_per_sec", VerdictSame, VerdictSame},
		{"more drops", key("ws:disconnect", 500, 50, 1, nil), key("ws:disconnect", 700, 70, 1, nil), 0.1, 0, "rate_per_sec", VerdictRegressed, VerdictRegressed},
		// Error rates over few calls: 0 → 2% of 50 calls is noise (3σ ≈ 6 pp).
		{"few errors", key("api:a", 50, 5, 0, nil), key("api:a", 50, 5, 0.02, nil), 0.1, 0, "error_rate", VerdictSame, VerdictSame},
		// 0.6 → 0.9 ms is beyond 10% but under a 1 ms floor.
		{"under the floor", key("api:a", 10, 1, 0, f64(0.6)), key("api:a", 10, 1, 0, f64(0.9)), 0.1, 1, "p95_ms", VerdictSame, VerdictSame},
		// Latency only in the new run.
		{"new latency", key("api:a", 10, 1, 0, nil), key("api:a", 10, 1, 0, f64(5)), 0.1, 0, "p95_ms", VerdictNew, VerdictSame},
	} {
		base := &state.Report{Run: "b", DurationSecs: 10, Keys: []state.ReportKey{c.old}}
		rep := &state.Report{Run: "r", DurationSecs: 10, Keys: []state.ReportKey{c.cur}}
		cmp := CompareReports(rep, base, CompareOptions{Tolerance: c.tol, ErrorTolerancePP: DefaultErrorTolerancePP, MinLatencyDeltaMS: c.floor})
		if len(cmp.Keys) != 1 {
			t.Fatalf("%s: keys %+v", c.name, cmp.Keys)
		}
		if got := verdict(cmp.Keys[0], c.stat); got != c.want || cmp.Keys[0].Verdict != c.key {
			t.Errorf("%s: %s %s, key %s; want %s, key %s", c.name, c.stat, got, cmp.Keys[0].Verdict, c.want, c.key)
		}
	}
	// Keys in one run only; thresholds and launches side by side.
	yes, no := true, false
	base := &state.Report{Run: "b", Keys: []state.ReportKey{key("api:gone", 1, 1, 0, nil)},
		Thresholds: []state.ThresholdResult{{Key: "api:a", Expr: "p95 < 1s", Passed: yes}, {Key: "api:a", Expr: "error_rate < 1%", Passed: no}},
		Launches:   []state.ReportLaunch{{Name: "herd", SpreadMS: 20}}}
	rep := &state.Report{Run: "r", Keys: []state.ReportKey{key("api:new", 1, 1, 0, nil)},
		Thresholds: []state.ThresholdResult{{Key: "api:a", Expr: "p95 < 1s", Passed: no}, {Key: "api:a", Expr: "error_rate < 1%", Passed: yes}},
		Launches:   []state.ReportLaunch{{Name: "herd", SpreadMS: 60}, {Name: "herd", SpreadMS: 1}}}
	cmp := CompareReports(rep, base, DefaultCompareOptions())
	if len(cmp.Keys) != 2 || cmp.Keys[0].Key != "api:gone" || cmp.Keys[0].Verdict != VerdictGone || cmp.Keys[1].Verdict != VerdictNew {
		t.Errorf("keys %+v", cmp.Keys)
	}
	got := map[string]string{}
	for _, th := range cmp.Thresholds {
		got[th.Expr] = th.Verdict
	}
	if got["p95 < 1s"] != VerdictRegressed || got["error_rate < 1%"] != VerdictImproved {
		t.Errorf("thresholds %+v", cmp.Thresholds)
	}
	if len(cmp.Launches) != 2 || cmp.Launches[0].Verdict != VerdictRegressed || cmp.Launches[1].Verdict != VerdictNew {
		t.Errorf("launches %+v", cmp.Launches)
	}
}

// Two real runs against pond, the same koi and behaviors, the second
// against a pond answering conversations.list slower: compared with the
// clean run at a 100% tolerance, the slow method's latency keys are
// regressed and the unchanged method is the same. How much slower is
// derived from a clean calibration run: a busy machine adds its own
// queueing to every call (hundreds of ms on a race-instrumented,
// CPU-starved run), so the added latency is four times the slowest clean
// call — every slow call then takes more than twice any clean one, with
// room for the load to grow. The compared pair runs side by side, so the
// unchanged method sees the same load in both.
// A bad baseline is 404 naming the field; bad tolerances are 400 naming
// theirs.
func TestCompareRunsAgainstPond(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	// Both ponds add 50 ms to every call, so latencies are not sub-ms
	// noise; the slow one adds more to conversations.list (set below,
	// once the clean run has shown this machine's latencies).
	clean := openPond(t, map[string]pond.Fault{"*": {Latency: 50 * time.Millisecond}})
	slow := openPond(t, map[string]pond.Fault{"*": {Latency: 50 * time.Millisecond}})
	openSchool(t, k, k.NATSURL(), "s1", 100)
	// A first clean run measures this machine's latencies; the compared
	// pair then runs side by side, under the same load.
	calib := pondRun(t, k, clean, "calibration", 20, 3)
	var slowest float64 // ms
	for _, rk := range finalReport(t, k, calib.ID, 30*time.Second).Keys {
		if rk.Key == "api:conversations.list" && rk.Max != nil {
			slowest = *rk.Max
		}
	}
	if slowest == 0 {
		t.Fatal("the calibration run has no conversations.list latency")
	}
	added := max(200*time.Millisecond, time.Duration(4*slowest*float64(time.Millisecond)))
	t.Logf("slowest clean conversations.list %.0f ms: the slow pond adds %v", slowest, added)
	_ = slow.SetFaults(map[string]pond.Fault{"*": {Latency: 50 * time.Millisecond}, "conversations.list": {Latency: 50*time.Millisecond + added}})
	// Long enough for calls that slow to complete a few times each.
	secs := 4 + 2*added.Seconds()
	base := pondRun(t, k, clean, "clean", 20, secs)
	run := pondRun(t, k, slow, "slow", 20, secs)
	finalReport(t, k, base.ID, 30*time.Second+2*added)
	finalReport(t, k, run.ID, 30*time.Second+2*added)

	var got ComparedReport
	if code := api(t, k, "", "GET", "/api/v1/runs/"+run.ID+"/report?baseline="+base.ID+"&tolerance=100%25", nil, &got); code != 200 || got.Comparison == nil {
		t.Fatalf("comparison: %d %+v", code, got)
	}
	c := got.Comparison
	if c.Baseline != base.ID || c.Tolerance != 1 || c.ErrorTolerancePP != DefaultErrorTolerancePP || got.Report == nil || got.Run != run.ID {
		t.Errorf("comparison header %+v (report %v)", c, got.Report)
	}
	keys := map[string]KeyComparison{}
	for _, kc := range c.Keys {
		keys[kc.Key] = kc
		var parts []string
		for _, s := range kc.Stats {
			if s.Baseline != nil && s.Value != nil {
				parts = append(parts, fmt.Sprintf("%s %.3g→%.3g %s", s.Stat, *s.Baseline, *s.Value, s.Verdict))
			}
		}
		t.Logf("%-28s %-9s %s", kc.Key, kc.Verdict, strings.Join(parts, ", "))
	}
	list, auth := keys["api:conversations.list"], keys["api:auth.test"]
	// The unchanged method's p50 moved only by the machine: that much
	// noise is allowed on the slow method's p50 delta too.
	var noise float64
	for _, s := range auth.Stats {
		if s.Stat == "p50_ms" && s.Delta != nil {
			noise = math.Abs(*s.Delta)
		}
	}
	if list.Verdict != VerdictRegressed {
		t.Errorf("api:conversations.list is %s, want regressed", list.Verdict)
	}
	for _, s := range list.Stats {
		if strings.HasSuffix(s.Stat, "_ms") && s.Verdict != VerdictRegressed {
			t.Errorf("api:conversations.list %s is %s, want regressed", s.Stat, s.Verdict)
		}
		want := float64(added.Milliseconds())
		if s.Stat == "p50_ms" && (s.Delta == nil || *s.Delta < want-50-noise || *s.Delta > want+200+noise) {
			t.Errorf("api:conversations.list p50 delta %v ms, want about +%.0f (machine noise %.0f ms)", deref(s.Delta), want, noise)
		}
	}
	if auth.Verdict != VerdictSame {
		t.Errorf("api:auth.test is %s, want same: %+v", auth.Verdict, auth.Stats)
	}
	if c.Regressed < 1 || len(c.Keys) < 4 {
		t.Errorf("%d keys regressed of %d", c.Regressed, len(c.Keys))
	}

	// The comparison as CSV: one row per key and statistic.
	csv := apiText(t, k, "/api/v1/runs/"+run.ID+"/report?format=csv&baseline="+base.ID+"&tolerance=0.5")
	if !strings.HasPrefix(csv, "run,baseline,key,stat,") || !strings.Contains(csv, run.ID+","+base.ID+",api:conversations.list,p50_ms,") ||
		!strings.Contains(csv, ",regressed\n") {
		t.Errorf("comparison CSV:\n%s", csv)
	}

	// Bad input: unknown baseline, bad tolerances, a tolerance alone.
	var e errorBody
	for _, c := range []struct {
		query, field string
		code         int
	}{
		{"?baseline=run-nope", "baseline", 404},
		{"?baseline=" + base.ID + "&tolerance=lots", "tolerance", 400},
		{"?baseline=" + base.ID + "&tolerance=-3%25", "tolerance", 400},
		{"?baseline=" + base.ID + "&error_tolerance=x", "error_tolerance", 400},
		{"?baseline=" + base.ID + "&min_delta=-1ms", "min_delta", 400},
		{"?baseline=" + base.ID + "&tolerance=10%", "tolerance", 400}, // not URL-encoded
		{"?tolerance=10%25", "baseline", 400},
		{"?baseline=" + base.ID + "&format=xml", "format", 400},
	} {
		e = errorBody{}
		if code := api(t, k, "", "GET", "/api/v1/runs/"+run.ID+"/report"+c.query, nil, &e); code != c.code || e.Error == nil || e.Error.Field != c.field {
			t.Errorf("%s: %d %+v, want %d naming %s", c.query, code, e.Error, c.code, c.field)
		}
	}
	if code := api(t, k, "", "GET", "/api/v1/runs/run-nope/report?baseline="+base.ID, nil, &e); code != 404 || e.Error.Field != "id" {
		t.Errorf("unknown run: %d %+v", code, e.Error)
	}
}
