package keeper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

func TestBadThresholdRefusedWithFieldUnknownKeyWarned(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ctx := context.Background()
	seedRun(t, k, 1)
	spec := RunSpec{Name: "gated", BehaviorSet: "bg", Koi: 1, Target: state.Target{APIBase: "http://127.0.0.1:9090/api"},
		Thresholds: map[string][]string{"api:api.test": {"p95 < 300ms", "error_rate < 1 %"}}}
	_, err := k.CreateRun(ctx, "test", spec)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeInvalid || e.Field != `thresholds["api:api.test"][1]` {
		t.Fatalf("bad threshold: %v (%#v)", err, e)
	}
	spec.Thresholds = map[string][]string{"api:api.test": {"p95 < 300ms"}, "api:chat.nope": {"p99 < 1s"}, "db:x": {"count > 1"}}
	run, err := k.CreateRun(ctx, "test", spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Warnings) != 2 || !strings.Contains(strings.Join(run.Warnings, "\n"), "chat.nope") ||
		!strings.Contains(strings.Join(run.Warnings, "\n"), `unknown metric kind "db"`) {
		t.Errorf("warnings %q", run.Warnings)
	}
	var v struct{ Warnings []string }
	if code := (wiretest.API{Base: "http://" + k.HTTPAddr()}).Do(t, "GET", "/api/v1/runs/"+run.ID, nil, &v); code != 200 || len(v.Warnings) != 2 {
		t.Errorf("run view: %d %+v", code, v)
	}
}

// exactQuantile is the sample at rank ceil(q·n) of sorted samples (what a
// DDSketch approximates within its relative accuracy).
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// The report's quantiles agree with exact ones from the raw latencies
// within 1%; the report is written when the run's duration elapses, with
// its thresholds judged, and survives a keeper restart.
func TestReportQuantilesAndRestart(t *testing.T) {
	dir := t.TempDir()
	k := openKeeper(t, dir)
	ctx := context.Background()
	if _, err := k.PutBehaviorSet(ctx, "test", "bg", []behaviors.File{{Name: "bg.json", Data: []byte(bgSet)}}); err != nil {
		t.Fatal(err)
	}
	run, err := k.CreateRun(ctx, "test", RunSpec{Name: "timed", BehaviorSet: "bg", Koi: 0, DurationSecs: 2,
		Target: state.Target{APIBase: "http://127.0.0.1:9090/api"},
		Thresholds: map[string][]string{
			"api:api.test":  {"p50 < 10s", "error_rate < 1%", "count >= 3000"},
			"event:message": {"p99 < 1ms"},
			"api:absent":    {"p95 < 1s"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	nc := schoolConn(t, k)
	defer nc.Close()
	// Three schools' worth of lognormal latencies, several reports each.
	rng := rand.New(rand.NewPCG(1, 2))
	var raw, events []time.Duration
	for school := range 3 {
		for rep := range 4 {
			var rec metrics.Recorder
			for range 1000 {
				d := time.Duration(math.Exp(rng.NormFloat64()*0.8+3.5) * float64(time.Millisecond))
				raw = append(raw, d)
				rec.Observe("api:api.test", d, metrics.OK)
				if rng.IntN(50) == 0 {
					rec.Count("api:api.test", metrics.ServerError)
				}
				e := time.Duration(rng.ExpFloat64() * float64(20*time.Millisecond))
				events = append(events, e)
				rec.Observe("event:message", e, metrics.OK)
			}
			rec.Observe("ws:connect", 3*time.Millisecond, metrics.OK)
			rec.Count("ws:disconnect", metrics.Transport)
			rec.Count("ws:close:1006", metrics.Transport)
			snap, _ := rec.Snapshot().MarshalBinary()
			data, _ := wire.Encode(&wire.MetricsReport{School: fmt.Sprint("s", school), Seq: uint64(rep + 1), Start: time.Now().Add(-time.Second),
				End: time.Now(), Runs: []wire.RunMetrics{{Run: run.ID, Snapshot: snap}}})
			if err := nc.Publish(wire.SubjectMetrics, data); err != nil {
				t.Fatal(err)
			}
		}
	}
	nc.Flush()
	slices.Sort(raw)
	slices.Sort(events)

	var rep *state.Report
	wiretest.WaitFor(t, 10*time.Second, "the final report", func() error {
		if rep = k.State().Report(nil, run.ID); rep == nil {
			return errors.New("no final report yet")
		}
		return nil
	})
	if !rep.Final || rep.State != state.RunStopped || rep.EndReason != "duration elapsed" {
		t.Errorf("report %+v", rep)
	}
	check := func(rep *state.Report) {
		t.Helper()
		var key *state.ReportKey
		for i := range rep.Keys {
			if rep.Keys[i].Key == "api:api.test" {
				key = &rep.Keys[i]
			}
		}
		if key == nil {
			t.Fatalf("no api:api.test in %+v", rep.Keys)
		}
		if key.Samples != uint64(len(raw)) || key.Count < key.Samples || key.Failures != key.Count-key.Samples {
			t.Errorf("counts %+v", key)
		}
		for _, q := range []struct {
			p   float64
			got *float64
		}{{0.5, key.P50}, {0.9, key.P90}, {0.95, key.P95}, {0.99, key.P99}, {1, key.Max}} {
			want := ms(exactQuantile(raw, q.p))
			if q.got == nil || math.Abs(*q.got-want) > 0.01*want {
				t.Errorf("p%g: report %v ms, exact %.3f ms", q.p*100, q.got, want)
			} else {
				t.Logf("p%g: report %.3f ms, exact %.3f ms (%.3f%%)", q.p*100, *q.got, want, 100*math.Abs(*q.got-want)/want)
			}
		}
		if ws := rep.Websocket; ws.Connects != 12 || ws.Drops != 12 || ws.Reconnects != 12 || ws.Closes["1006"] != 12 {
			t.Errorf("websocket %+v", ws)
		}
		// Thresholds: p50 and count pass; error_rate (≈2%) fails, the
		// event p99 fails, the absent key fails for lack of data.
		want := map[string]bool{"p50 < 10s": true, "error_rate < 1%": false, "count >= 3000": true, "p99 < 1ms": false, "p95 < 1s": false}
		if len(rep.Thresholds) != len(want) || rep.Passed == nil || *rep.Passed {
			t.Fatalf("thresholds %+v passed %v", rep.Thresholds, rep.Passed)
		}
		for _, th := range rep.Thresholds {
			if th.Passed != want[th.Expr] {
				t.Errorf("threshold %+v, want passed=%v", th, want[th.Expr])
			}
			if th.Key == "event:message" {
				if w := ms(exactQuantile(events, 0.99)); th.Observed == nil || math.Abs(*th.Observed-w) > 0.01*w {
					t.Errorf("event p99 observed %v, exact %.3f", th.Observed, w)
				}
			}
		}
	}
	check(rep)
	if len(rep.Snapshot) == 0 {
		t.Error("the report keeps no encoded snapshot")
	}
	enc, _ := json.Marshal(rep)
	t.Logf("report record: %d bytes", len(enc))

	// Crash and restart: the report is restored as it was.
	k.ns.Shutdown()
	k.ns.WaitForShutdown()
	k.Close()
	k2 := openKeeper(t, dir)
	got, err := k2.RunReport(run.ID)
	if err != nil || !got.Final {
		t.Fatalf("after restart: %+v %v", got, err)
	}
	check(got)
	var csv string
	var apiRep struct {
		Final    bool
		Snapshot []byte
		Keys     []state.ReportKey
	}
	if code := (wiretest.API{Base: "http://" + k2.HTTPAddr()}).Do(t, "GET", "/api/v1/runs/"+run.ID+"/report", nil, &apiRep); code != 200 || !apiRep.Final || apiRep.Snapshot != nil || len(apiRep.Keys) != 5 {
		t.Errorf("API report: %d %+v", code, apiRep)
	}
	csv = apiText(t, k2, "/api/v1/runs/"+run.ID+"/report?format=csv")
	// A header, the 5 keys, the set's behavior that never ran (its
	// fidelity), the run's fidelity verdict.
	if lines := strings.Split(strings.TrimSpace(csv), "\n"); len(lines) != 8 || !strings.HasPrefix(lines[0], "run,key,count") ||
		!strings.HasPrefix(lines[6], run.ID+",behavior:api.test,0,") || !strings.HasPrefix(lines[7], run.ID+",fidelity,") {
		t.Errorf("CSV:\n%s", csv)
	}
}
