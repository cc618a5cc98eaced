package metrics

import (
	"sync"
	"testing"
	"time"
	"unsafe"
)

func TestShardSize(t *testing.T) {
	if got := unsafe.Sizeof(shard{}); got != 128 {
		t.Errorf("shard is %d bytes; adjust its padding to 128", got)
	}
}

func TestRecorderZeroValue(t *testing.T) {
	var r Recorder
	s := r.Snapshot()
	if len(s.Series) != 0 || s.Start.IsZero() || !s.Start.Equal(s.End) {
		t.Fatalf("empty snapshot = %+v", s)
	}
	r.Observe("api:x", 5*time.Millisecond, OK)
	s = r.Snapshot()
	if got := s.Series["api:x"]; got == nil || got.Total() != 1 || got.Samples() != 1 {
		t.Fatalf("series = %+v", got)
	}
}

func TestSnapshotResets(t *testing.T) {
	var r Recorder
	api := r.Series("api:chat.postMessage")
	if r.Series("api:chat.postMessage") != api {
		t.Fatal("Series returned a different handle for the same key")
	}
	ws := r.Series("ws:connect")
	api.Observe(10*time.Millisecond, OK)
	api.Observe(20*time.Millisecond, ServerError)
	api.Count(Canceled)
	ws.Observe(time.Second, OK)
	r.Count("event:message", OK)

	s1 := r.Snapshot()
	if got := s1.Keys(); len(got) != 3 || got[0] != "api:chat.postMessage" || got[1] != "event:message" || got[2] != "ws:connect" {
		t.Fatalf("keys = %v", got)
	}
	a := s1.Series["api:chat.postMessage"]
	if a.Total() != 3 || a.Samples() != 2 || a.Counts[OK] != 1 || a.Counts[ServerError] != 1 || a.Counts[Canceled] != 1 {
		t.Errorf("api series = %v", a)
	}
	if a.Failures() != 1 {
		t.Errorf("failures = %d, want 1", a.Failures())
	}
	if e := s1.Series["event:message"]; e.Samples() != 0 {
		t.Errorf("event series has %d samples", e.Samples())
	} else if _, ok := e.Quantile(0.5); ok {
		t.Error("Quantile on a series without samples reported ok")
	}

	// Nothing new: the next snapshot is empty, and starts where s1 ended.
	s2 := r.Snapshot()
	if len(s2.Series) != 0 {
		t.Errorf("second snapshot has %v", s2.Keys())
	}
	if !s2.Start.Equal(s1.End) || s2.End.Before(s2.Start) {
		t.Errorf("intervals do not tile: s1 %v–%v, s2 %v–%v", s1.Start, s1.End, s2.Start, s2.End)
	}

	// Cached handles keep working after a snapshot, and only new data shows.
	api.Observe(30*time.Millisecond, OK)
	s3 := r.Snapshot()
	a = s3.Series["api:chat.postMessage"]
	if len(s3.Series) != 1 || a.Total() != 1 || a.Samples() != 1 {
		t.Fatalf("third snapshot = %v", s3.Series)
	}
	if d, _ := a.Quantile(0); d < 29*time.Millisecond || d > 31*time.Millisecond {
		t.Errorf("p0 = %v, want ~30ms (old samples leaked in?)", d)
	}
	// The sketch handed out is owned by the snapshot: recording more must
	// not change it.
	api.Observe(time.Hour, OK)
	if d, _ := a.Quantile(1); d > 31*time.Millisecond {
		t.Errorf("snapshot sketch changed after handover: p100 = %v", d)
	}
}

func TestObserveEdgeValues(t *testing.T) {
	var r Recorder
	s := r.Series("k")
	s.Observe(-time.Second, OK) // counts as zero latency
	s.Observe(0, OK)
	s.Observe(time.Duration(1<<63-1), OK)
	s.Observe(time.Millisecond, Outcome(200)) // counted as Invalid
	s.Count(NumOutcomes)                      // counted as Invalid
	ss := r.Snapshot().Series["k"]
	if ss.Samples() != 4 || ss.Counts[OK] != 3 || ss.Counts[Invalid] != 2 {
		t.Fatalf("series = %v", ss)
	}
	if d, ok := ss.Quantile(0); !ok || d != 0 {
		t.Errorf("p0 = %v, %v; want 0", d, ok)
	}
	if d, ok := ss.Quantile(1); !ok || d < time.Duration(float64(1<<63-1)*0.98) {
		t.Errorf("p100 = %v, %v; want ~max duration", d, ok)
	}
	for _, q := range []float64{-0.1, 1.1} {
		if _, ok := ss.Quantile(q); ok {
			t.Errorf("Quantile(%v) reported ok", q)
		}
	}
}

// TestConcurrentWriters hammers a few series from many goroutines while
// snapshots are taken; summed snapshots must account for every observation
// exactly once. Run with -race.
func TestConcurrentWriters(t *testing.T) {
	var r Recorder
	keys := []string{"api:a", "api:b", "ws:connect"}
	const writers, perWriter = 64, 2000

	var total Snapshot
	stop := make(chan struct{})
	snapsDone := make(chan struct{})
	go func() {
		defer close(snapsDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := total.Merge(r.Snapshot()); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			var cached []*Series
			for _, k := range keys {
				cached = append(cached, r.Series(k))
			}
			for i := range perWriter {
				o := Outcome((w + i) % int(NumOutcomes))
				k := (w + i/3) % len(keys)
				switch i % 3 {
				case 0:
					cached[k].Observe(time.Duration(i+1)*time.Microsecond, o)
				case 1:
					r.Observe(keys[k], time.Duration(i+1)*time.Microsecond, o)
				case 2:
					r.Count(keys[k], o)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-snapsDone
	if err := total.Merge(r.Snapshot()); err != nil {
		t.Fatal(err)
	}

	// Expected counts, computed the same way.
	want := map[string]*[NumOutcomes]uint64{}
	wantSamples := map[string]uint64{}
	for _, k := range keys {
		want[k] = new([NumOutcomes]uint64)
	}
	for w := range writers {
		for i := range perWriter {
			k := keys[(w+i/3)%len(keys)]
			want[k][(w+i)%int(NumOutcomes)]++
			if i%3 != 2 {
				wantSamples[k]++
			}
		}
	}
	var grand uint64
	for _, k := range keys {
		ss := total.Series[k]
		if ss == nil {
			t.Fatalf("series %q missing", k)
		}
		if ss.Counts != *want[k] {
			t.Errorf("%s counts = %v, want %v", k, ss.Counts, *want[k])
		}
		if ss.Samples() != wantSamples[k] {
			t.Errorf("%s samples = %d, want %d", k, ss.Samples(), wantSamples[k])
		}
		if ss.sketch == nil {
			t.Fatalf("%s has no sketch", k)
		}
		if got := ss.sketch.(*ddQuantiler).count(); got != float64(wantSamples[k]) {
			t.Errorf("%s sketch holds %v values, want %d", k, got, wantSamples[k])
		}
		grand += ss.Total()
	}
	if grand != writers*perWriter {
		t.Errorf("grand total = %d, want %d", grand, writers*perWriter)
	}
}
