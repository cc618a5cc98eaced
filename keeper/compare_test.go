package keeper

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper/verdict"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/wire/wiretest"
)

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
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "GET", "/api/v1/runs/"+run.ID+"/report?baseline="+base.ID+"&tolerance=100%25", nil, &got); code != 200 || got.Comparison == nil {
		t.Fatalf("comparison: %d %+v", code, got)
	}
	c := got.Comparison
	if c.Baseline != base.ID || c.Tolerance != 1 || c.ErrorTolerancePP != verdict.DefaultErrorTolerancePP || got.Report == nil || got.Run != run.ID {
		t.Errorf("comparison header %+v (report %v)", c, got.Report)
	}
	keys := map[string]verdict.KeyComparison{}
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
	if list.Verdict != verdict.VerdictRegressed {
		t.Errorf("api:conversations.list is %s, want regressed", list.Verdict)
	}
	for _, s := range list.Stats {
		if strings.HasSuffix(s.Stat, "_ms") && s.Verdict != verdict.VerdictRegressed {
			t.Errorf("api:conversations.list %s is %s, want regressed", s.Stat, s.Verdict)
		}
		want := float64(added.Milliseconds())
		if s.Stat == "p50_ms" && (s.Delta == nil || *s.Delta < want-50-noise || *s.Delta > want+200+noise) {
			t.Errorf("api:conversations.list p50 delta %v ms, want about +%.0f (machine noise %.0f ms)", deref(s.Delta), want, noise)
		}
	}
	if auth.Verdict != verdict.VerdictSame {
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
		if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "GET", "/api/v1/runs/"+run.ID+"/report"+c.query, nil, &e); code != c.code || e.Error == nil || e.Error.Field != c.field {
			t.Errorf("%s: %d %+v, want %d naming %s", c.query, code, e.Error, c.code, c.field)
		}
	}
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "GET", "/api/v1/runs/run-nope/report?baseline="+base.ID, nil, &e); code != 404 || e.Error.Field != "id" {
		t.Errorf("unknown run: %d %+v", code, e.Error)
	}
}
