package state

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// fill writes one of everything and returns the store.
func fill(t testing.TB, p Persister) *Store {
	t.Helper()
	s, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err = s.Write(ctx, func(tx *Txn) error {
		if err := tx.PutBehaviorSet(&BehaviorSet{Hash: "h1", Name: "bg", Version: 1, Files: []File{{"a.json", "{}"}}}); err != nil {
			return err
		}
		if err := tx.PutFormation(&Formation{Hash: "f1", Name: "herd", Version: 1, Percent: 10}); err != nil {
			return err
		}
		if err := tx.PutRun(&Run{ID: "r1", Name: "always", BehaviorSet: "h1", Koi: 100, State: RunRunning,
			Switch: Switch{State: wire.Running, Epoch: tx.NextEpoch()}}); err != nil {
			return err
		}
		if err := tx.PutLaunch(&Launch{ID: "l1", Run: "r1", Formation: "f1", State: LaunchPending}); err != nil {
			return err
		}
		if err := tx.PutSchool(&School{ID: "school/a b", Capacity: 50, LastSeen: time.Now(), Status: &SchoolStatus{KoiRunning: 3}}); err != nil {
			return err
		}
		if err := tx.PutAssignment(&Assignment{Run: "r1", School: "school/a b", From: 0, To: 50}); err != nil {
			return err
		}
		if err := tx.PutSwitch(&GlobalSwitch{Switch: Switch{State: wire.Paused, Epoch: tx.NextEpoch(), By: "alice"}}); err != nil {
			return err
		}
		return tx.Audit("alice", "pause", "", "global")
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// check asserts that s holds what fill wrote.
func check(t testing.TB, s *Store) {
	t.Helper()
	r := s.Read()
	if b := r.LatestBehaviorSet(nil, "bg"); b == nil || b.Hash != "h1" || b.Files[0].Name != "a.json" {
		t.Errorf("behavior set: %+v", b)
	}
	if f := r.Formation(nil, "f1"); f == nil || f.Percent != 10 {
		t.Errorf("formation: %+v", f)
	}
	if run := r.Run(nil, "r1"); run == nil || run.Koi != 100 || run.Switch.Epoch != 1 {
		t.Errorf("run: %+v", run)
	}
	if l := r.LaunchesIn(nil, LaunchPending); len(l) != 1 {
		t.Errorf("pending launches: %d", len(l))
	}
	if sc := r.School(nil, "school/a b"); sc == nil || sc.Capacity != 50 || sc.LastSeen.IsZero() {
		t.Errorf("school: %+v", sc)
	}
	if a := r.AssignmentsOfSchool(nil, "school/a b"); len(a) != 1 || a[0].To != 50 {
		t.Errorf("assignments: %+v", a)
	}
	if g := r.Switch(nil); g.State != wire.Paused || g.Epoch != 2 {
		t.Errorf("switch: %+v", g)
	}
	if a := r.Audit(nil, 0, 10); len(a) != 1 || a[0].Actor != "alice" {
		t.Errorf("audit: %+v", a)
	}
	if s.Epoch() != 2 {
		t.Errorf("epoch %d, want 2", s.Epoch())
	}
}

func TestRestoreFromMemory(t *testing.T) {
	p := &MemPersister{}
	check(t, fill(t, p))
	s2, _ := New(p)
	if err := s2.Restore(p.Records); err != nil {
		t.Fatal(err)
	}
	check(t, s2)
	if _, ok := p.Records["school.=7363686f6f6c2f612062"]; !ok {
		t.Errorf("unsafe id not hex-encoded: %v", p.Records)
	}
	if strings.Contains(string(p.Records["school.=7363686f6f6c2f612062"]), "koi_running") {
		t.Error("school heartbeat persisted")
	}
}

func TestFailedPersistAppliesNothing(t *testing.T) {
	p := &MemPersister{}
	s := fill(t, p)
	before := len(p.Records)
	p.Fail = func(k string) bool { return strings.HasPrefix(k, "audit.") }
	err := s.Write(context.Background(), func(tx *Txn) error {
		if err := tx.PutRun(&Run{ID: "r2", Koi: 1, State: RunRunning}); err != nil {
			return err
		}
		run := *tx.Run(nil, "r1")
		run.Koi = 7
		if err := tx.PutRun(&run); err != nil {
			return err
		}
		return tx.Audit("bob", "create", "run r2", "")
	})
	if err == nil {
		t.Fatal("write succeeded despite a failing persister")
	}
	if s.Read().Run(nil, "r2") != nil || s.Read().Run(nil, "r1").Koi != 100 {
		t.Error("memdb half-applied")
	}
	if len(p.Records) != before || !strings.Contains(string(p.Records["run.r1"]), `"koi":100`) {
		t.Errorf("persisted records not rolled back: %d vs %d", len(p.Records), before)
	}
	if s.Epoch() != 2 {
		t.Errorf("epoch moved on failure: %d", s.Epoch())
	}
}

func TestWatchSetFiresOnChange(t *testing.T) {
	p := &MemPersister{}
	s := fill(t, p)
	ws := make(map[<-chan struct{}]struct{})
	s.Read().Run(ws, "r1")
	go func() {
		_ = s.Write(context.Background(), func(tx *Txn) error {
			r := *tx.Run(nil, "r1")
			r.Koi = 5
			return tx.PutRun(&r)
		})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w := watchSet(ws)
	if err := w.WatchCtx(ctx); err != nil {
		t.Fatalf("watch did not fire: %v", err)
	}
}

func openKV(t testing.TB, url string) (*KV, *nats.Conn) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := OpenKV(ctx, js, "koipond_test", 1)
	if err != nil {
		t.Fatal(err)
	}
	return kv, nc
}

func TestRestoreFromJetStreamAfterCrash(t *testing.T) {
	dir := t.TempDir()
	ns := wiretest.StartNATS(t, wiretest.NATSConfig{StoreDir: dir}).Server
	kv, nc := openKV(t, ns.ClientURL())
	fill(t, kv)
	// Delete an assignment to check deletes survive too.
	nc.Close()
	ns.Shutdown() // no clean keeper shutdown: the server just goes away
	ns.WaitForShutdown()

	ns2 := wiretest.StartNATS(t, wiretest.NATSConfig{StoreDir: dir}).Server
	defer ns2.Shutdown()
	kv2, nc2 := openKV(t, ns2.ClientURL())
	defer nc2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := kv2.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := New(kv2)
	if err := s.Restore(recs); err != nil {
		t.Fatal(err)
	}
	check(t, s)
	// A later write keeps epochs and audit sequence numbers increasing.
	if err := s.Write(ctx, func(tx *Txn) error {
		if e := tx.NextEpoch(); e != 3 {
			t.Errorf("epoch after restore %d, want 3", e)
		}
		return tx.Audit("x", "y", "", "")
	}); err != nil {
		t.Fatal(err)
	}
	if a := s.Read().Audit(nil, 0, 1); a[0].Seq != 2 {
		t.Errorf("audit seq %d, want 2", a[0].Seq)
	}
}
