package warehouse

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
)

// The generated sessions, run by real koi over HTTP, make the transitions
// the generator says they make: each entry's behavior run as many times
// as the export held sessions beginning with it, the transitions a server
// sees per token (within each run) are within 4 standard errors of their
// Reproduced, and every run begins with its entry method. Time is sped up
// 10,000× so the learned pauses take milliseconds.
func TestGeneratedSessionsRunAsLearned(t *testing.T) {
	dir := t.TempDir()
	calls := sessionModel.simulate(11, 200, time.Date(2026, 11, 2, 14, 0, 0, 0, time.UTC), 2*time.Hour, DefaultSessionGap)
	res := generate(t, Options{From: writeCalls(t, dir, "calls.csv", calls), Sessions: true})
	var out bytes.Buffer
	if err := res.Encode(&out); err != nil {
		t.Fatal(err)
	}
	set, diags := behaviors.Parse(behaviors.File{Name: filepath.Join(dir, "sessions.json"), Data: out.Bytes()})
	if set == nil {
		t.Fatal(diags)
	}

	var mu sync.Mutex
	seen := map[string][]string{} // token → methods called, in order
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		mu.Lock()
		seen[tok] = append(seen[tok], strings.TrimPrefix(r.URL.Path, "/api/"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	rt, err := koi.NewRuntime(koi.RuntimeConfig{Set: set, APIBase: srv.URL + "/api", TimeScale: 10_000})
	if err != nil {
		t.Fatal(err)
	}

	// One koi per entry runs its sessions one after another; a session's
	// calls are the token's calls made during its run.
	got := map[[2]string]float64{}
	var wg sync.WaitGroup
	var runErr error
	for i, e := range res.Sessions.Entries {
		b := set.Behavior(e.Behavior)
		if b == nil {
			t.Fatalf("no behavior %q", e.Behavior)
		}
		tok := fmt.Sprintf("t%d", i)
		k := rt.New(behaviors.Identity{Index: i, UserID: "U" + tok, Token: tok}, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range e.Sessions {
				mu.Lock()
				from := len(seen[tok])
				mu.Unlock()
				if err := k.RunSequence(context.Background(), b.Sequence, nil); err != nil {
					mu.Lock()
					runErr = err
					mu.Unlock()
					return
				}
				mu.Lock()
				run := seen[tok][from:]
				if len(run) == 0 || run[0] != e.Method {
					runErr = fmt.Errorf("a %s session called %v", e.Method, run)
				}
				for j := 1; j < len(run); j++ {
					got[[2]string{run[j-1], run[j]}]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if runErr != nil {
		t.Fatal(runErr)
	}
	var made, want float64
	for _, tr := range res.Sessions.Transitions {
		n := got[[2]string{tr.From, tr.To}]
		made += n
		want += tr.Reproduced
		// A count of independent sessions' uses: its variance is at most
		// its mean.
		if bound := 4 * math.Sqrt(max(tr.Reproduced, 1)); math.Abs(n-tr.Reproduced) > bound {
			t.Errorf("%s>%s: the koi made it %.0f times, the generator says %.1f ± %.1f", tr.From, tr.To, n, tr.Reproduced, bound)
		}
		delete(got, [2]string{tr.From, tr.To})
	}
	for pair, n := range got {
		t.Errorf("%s>%s: made %.0f times, but it is not a learned transition", pair[0], pair[1], n)
	}
	t.Logf("the koi made %.0f transitions in %d sessions; the generator says %.1f (the export has %d)", made, res.Sessions.Count, want, res.Sessions.TransitionCount)
}
