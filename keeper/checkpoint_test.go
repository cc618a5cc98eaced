package keeper

import (
	"net"
	"testing"
	"time"

	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/wire/wiretest"
)

// pondCalls is how many auth.test calls pond answered, whatever the status.
func pondCalls(p *pond.Server) uint64 {
	var n uint64
	for _, c := range p.Stats().Requests["auth.test"] {
		n += c
	}
	return n
}

// A keeper closed and reopened on the same data dir in the middle of a run
// against pond still writes a final report covering both halves: the
// run's total is checkpointed into the KV (at most every 10 s, only when
// changed), restored at Open and deleted with the final report.
//
// The bound, asserted against pond's own counts: the report never counts
// more calls than pond answered, and it misses at most what pond answered
// between the last checkpoint and the reopened keeper (≤ 10 s plus the
// downtime; metrics published while the keeper is down are buffered by
// the school's NATS client and usually arrive), plus one in-flight call per
// koi. (Without the checkpoint the report would miss the whole first half,
// far beyond that bound.)
func TestReportSurvivesKeeperRestartMidRun(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	samePort := func(c *Config) { c.NATSListen = addr }
	k := openKeeper(t, dir, samePort)
	p := openPond(t, nil)
	openSchool(t, k, "nats://"+addr, "s1", 100)
	const koi = 20
	run := pondRun(t, k, p, "restarted", koi, 20)

	// Wait for the second checkpoint (the first is written with the first
	// metrics, the next checkpointEvery later), then let more arrive.
	var first time.Time
	wiretest.WaitFor(t, 5*time.Second, "a first checkpoint", func() error {
		if c := k.State().Checkpoint(nil, run.ID); c != nil {
			first = c.At
			return nil
		}
		return errString("no checkpoint yet")
	})
	wiretest.WaitFor(t, checkpointEvery+3*time.Second, "a newer checkpoint", func() error {
		if c := k.State().Checkpoint(nil, run.ID); c != nil && c.At.After(first) {
			return nil
		}
		return errString("no second checkpoint yet")
	})
	time.Sleep(1500 * time.Millisecond) // merged but not checkpointed: what a restart loses
	ck := k.State().Checkpoint(nil, run.ID)
	if ck == nil {
		t.Fatal("the run settled before the restart: the machine is too slow for this test's 20 s run")
	}
	snap := &metrics.Snapshot{}
	if err := snap.UnmarshalBinary(ck.Snapshot); err != nil {
		t.Fatal(err)
	}
	checkpointed := snap.Series["api:auth.test"].Total()
	before, _, _ := k.agg.total(run.ID)
	closeAt := time.Now()
	if age := closeAt.Sub(ck.At); age > checkpointEvery+time.Second {
		t.Errorf("last checkpoint %v old at the close, want ≤ %v", age, checkpointEvery+time.Second)
	}
	k.Close()
	pClose := pondCalls(p)

	k2 := openKeeper(t, dir, samePort)
	pReopen := pondCalls(p)
	restored, _, _ := k2.agg.total(run.ID)
	if got := restored.Series["api:auth.test"]; got == nil || got.Total() != checkpointed {
		t.Fatalf("restored total %v, want the checkpoint's %d", got, checkpointed)
	}
	// The exposure (koi-minutes of schedule; time scale 60: koi × seconds)
	// is restored as checkpointed, short of the closing keeper's by at
	// most what arrived after the checkpoint (one metrics interval more).
	if snap.Exposure == nil || restored.Exposure == nil || *restored.Exposure != *snap.Exposure {
		t.Fatalf("restored exposure %+v, want the checkpoint's %+v", restored.Exposure, snap.Exposure)
	}
	lostExp := before.Exposure.KoiMinutes() - restored.Exposure.KoiMinutes()
	expBound := koi * (closeAt.Sub(ck.At) + time.Second).Seconds()
	t.Logf("exposure: %.1f koi-minutes at the close, %.1f restored (%.1f behind, bound %.1f)",
		before.Exposure.KoiMinutes(), restored.Exposure.KoiMinutes(), lostExp, expBound)
	if lostExp < 0 || lostExp > expBound {
		t.Errorf("restored exposure is %.1f koi-minutes behind the closing keeper's, bound %.1f", lostExp, expBound)
	}
	rep := finalReport(t, k2, run.ID, 30*time.Second)
	pFinal := pondCalls(p)
	var got uint64
	for _, key := range rep.Keys {
		if key.Key == "api:auth.test" {
			got = key.Count
		}
	}
	lost := int64(pFinal) - int64(got)
	bound := int64(pReopen) - int64(checkpointed) + koi
	t.Logf("pond answered %d auth.test calls (%d by the close, %d by the reopen); checkpoint held %d (the closing keeper had %d); report counts %d: %d missing, bound %d",
		pFinal, pClose, pReopen, checkpointed, before.Series["api:auth.test"].Total(), got, lost, bound)
	if got > pFinal {
		t.Errorf("report counts %d calls, pond answered only %d: double counting", got, pFinal)
	}
	if lost > bound {
		t.Errorf("report misses %d calls, more than the %d answered since the last checkpoint", lost, bound)
	}
	// The stored report's snapshot carries the exposure: everything
	// restored and merged since, never more than the koi could run.
	final := &metrics.Snapshot{}
	if err := final.UnmarshalBinary(rep.Snapshot); err != nil || final.Exposure == nil {
		t.Fatalf("the report's snapshot: %v, exposure %+v", err, final.Exposure)
	}
	t.Logf("report exposure: %.1f koi-minutes over %.1f s", final.Exposure.KoiMinutes(), rep.DurationSecs)
	if e := final.Exposure.KoiMinutes(); e < restored.Exposure.KoiMinutes() || e > koi*(rep.DurationSecs+1) {
		t.Errorf("report exposure %.1f koi-minutes: below the restored %.1f or above %d koi × %.1f s", e, restored.Exposure.KoiMinutes(), koi, rep.DurationSecs+1)
	}
	// Without the checkpoint the report would hold only what the reopened
	// keeper merged; the bound above requires the first half too.
	if !rep.Final || rep.DurationSecs < 19 {
		t.Errorf("report %+v", rep)
	}
	if c := k2.State().Checkpoint(nil, run.ID); c != nil {
		t.Errorf("checkpoint kept after the final report: %+v", c.At)
	}
}

// errString is an error made of a message.
type errString string

func (e errString) Error() string { return string(e) }
