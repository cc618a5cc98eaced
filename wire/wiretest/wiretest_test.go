package wiretest_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// failure runs f with a testing.TB whose Fatal ends f (as the real one
// ends a test) and returns the message, or "" when f did not fail.
func failure(t *testing.T, f func(tb testing.TB)) string {
	t.Helper()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r.msg
}

type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Errorf(format string, args ...any) { r.msg = fmt.Sprintf(format, args...) }
func (r *recorder) Fatal(args ...any) {
	r.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

// WaitFor returns once the condition holds, after polling it; it fails
// with what it waited for and the condition's last word when time runs
// out, and Until does the same for a yes/no condition.
func TestWaitFor(t *testing.T) {
	var calls atomic.Int64
	start := time.Now()
	if msg := failure(t, func(tb testing.TB) {
		wiretest.WaitFor(tb, 5*time.Second, "the third call", func() error {
			if calls.Add(1) < 3 {
				return errors.New("too early")
			}
			return nil
		})
	}); msg != "" || calls.Load() != 3 {
		t.Fatalf("failed with %q after %d calls", msg, calls.Load())
	}
	if took := time.Since(start); took < 2*wiretest.PollInterval {
		t.Errorf("3 calls in %v: it did not wait between polls", took)
	}
	msg := failure(t, func(tb testing.TB) {
		wiretest.WaitFor(tb, 50*time.Millisecond, "a miracle", func() error { return errors.New("still 41") })
	})
	if !strings.Contains(msg, "waiting for a miracle") || !strings.Contains(msg, "still 41") {
		t.Errorf("timeout message %q names neither what nor the last error", msg)
	}
	msg = failure(t, func(tb testing.TB) { wiretest.Until(tb, 50*time.Millisecond, "never", func() bool { return false }) })
	if !strings.Contains(msg, "waiting for never") {
		t.Errorf("Until's timeout message %q", msg)
	}
	if msg := failure(t, func(tb testing.TB) { wiretest.Until(tb, time.Second, "now", func() bool { return true }) }); msg != "" {
		t.Errorf("Until failed on a holding condition: %s", msg)
	}
}

// NoneBefore fails on a count seen before the instant by more than the
// clock error it is given, and passes one within that error, one after
// the instant and none at all.
func TestNoneBefore(t *testing.T) {
	for _, c := range []struct {
		name      string
		countFrom time.Duration // the count turns 1 this long before the instant (0: never)
		clockErr  time.Duration
		fails     bool
	}{
		{"nothing happens", 0, 0, false},
		{"early with an exact clock", 500 * time.Millisecond, 0, true},
		{"early beyond the clock error", 500 * time.Millisecond, 50 * time.Millisecond, true},
		{"early within the clock error", 100 * time.Millisecond, 400 * time.Millisecond, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Margins of 300 ms and more either side of every bound: a
			// busy machine may pause the polls that long.
			at := time.Now().Add(600 * time.Millisecond)
			count := func() uint64 {
				if c.countFrom > 0 && time.Until(at) <= c.countFrom {
					return 1
				}
				return 0
			}
			var polls int
			msg := failure(t, func(tb testing.TB) {
				polls, _ = wiretest.NoneBefore(tb, at, "requests", count, func() time.Duration { return c.clockErr })
			})
			if c.fails != (msg != "") {
				t.Errorf("failed = %v (%q), want %v", msg != "", msg, c.fails)
			}
			if c.fails && !strings.Contains(msg, "before the instant") {
				t.Errorf("message %q does not say what happened", msg)
			}
			if polls == 0 {
				t.Errorf("no poll counted before the instant")
			}
		})
	}
}

// API sends JSON with the token, decodes the reply, returns the status
// from Do whatever it is, and fails Call on an error status with the
// reply's text.
func TestAPI(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer secret" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error": "no token"}`)
			return
		}
		if r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusUnsupportedMediaType)
			return
		}
		switch r.URL.Path {
		case "/api/v1/echo":
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"method": %q}`, r.Method)
		case "/api/v1/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			http.Error(w, "no such thing", http.StatusNotFound)
		}
	}))
	defer srv.Close()
	api := wiretest.API{Base: srv.URL + "/api/v1", Token: "secret"}
	var got struct{ Method string }
	api.Call(t, "POST", "/echo", map[string]int{"n": 1}, &got)
	if got.Method != "POST" {
		t.Errorf("decoded %+v", got)
	}
	api.Call(t, "DELETE", "/empty", nil, nil)
	var e struct{ Error string }
	if st := (wiretest.API{Base: srv.URL}).Do(t, "GET", "/api/v1/echo", nil, &e); st != http.StatusUnauthorized || e.Error != "no token" {
		t.Errorf("without the token: %d %+v", st, e)
	}
	msg := failure(t, func(tb testing.TB) { api.Call(tb, "GET", "/missing", `{"raw": true}`, nil) })
	if !strings.Contains(msg, "HTTP 404") || !strings.Contains(msg, "no such thing") {
		t.Errorf("Call on a 404: %q", msg)
	}
	msg = failure(t, func(tb testing.TB) { api.Do(tb, "GET", "/missing", nil, &got) })
	if !strings.Contains(msg, "HTTP 404") {
		t.Errorf("Do decoding a non-JSON reply: %q", msg)
	}
}

// StartNATS runs JetStream on a random port, and Restart brings the
// same server back on that port with its store: a stream written before
// holds its message after.
func TestNATSRestartKeepsTheStore(t *testing.T) {
	n := wiretest.StartNATS(t, wiretest.NATSConfig{})
	if n.Config.Port <= 0 || n.URL != fmt.Sprintf("nats://127.0.0.1:%d", n.Config.Port) {
		t.Fatalf("port %d, URL %s", n.Config.Port, n.URL)
	}
	put := func(value string) uint64 {
		t.Helper()
		nc := n.Connect(t)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		kv, err := js.CreateOrUpdateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "b", Storage: jetstream.FileStorage})
		if err != nil {
			t.Fatal(err)
		}
		if value == "" {
			e, err := kv.Get(t.Context(), "k")
			if err != nil {
				t.Fatalf("after the restart: %v", err)
			}
			if string(e.Value()) != "v1" {
				t.Errorf("after the restart: %q", e.Value())
			}
			return e.Revision()
		}
		rev, err := kv.PutString(t.Context(), "k", value)
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	rev := put("v1")
	port := n.Config.Port
	n.Restart(t)
	if n.Config.Port != port {
		t.Errorf("restarted on port %d, was %d", n.Config.Port, port)
	}
	if got := put(""); got != rev {
		t.Errorf("revision %d after the restart, was %d", got, rev)
	}
}

// With Roles' users the server admits the keeper's and the school's keys
// only, gives the school the permissions asked for, and the school's seed
// file carries the control key's line.
func TestNATSRoles(t *testing.T) {
	r := wiretest.NewRoles(t)
	school := &server.Permissions{Publish: &server.SubjectPermission{Allow: []string{wire.SubjectPoll}}}
	n := wiretest.StartNATS(t, wiretest.NATSConfig{Users: r.Users(school)})
	keeperConn := n.Connect(t, wiretest.NKeyOption(t, r.KeeperSeedFile))
	violations := make(chan error, 4)
	schoolConn := n.Connect(t, wiretest.NKeyOption(t, r.SchoolSeedFile),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	if err := keeperConn.Publish(wire.SubjectControl, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := keeperConn.Flush(); err != nil {
		t.Errorf("the keeper publishing control: %v", err)
	}
	if err := schoolConn.Publish(wire.SubjectControl, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	schoolConn.Flush()
	select {
	case err := <-violations:
		if !strings.Contains(err.Error(), "Permissions Violation") {
			t.Errorf("school publishing control: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the school published control without a permissions violation")
	}
	if _, err := nats.Connect(n.URL); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("a client without a key: %v, want an authorization violation", err)
	}
	stranger := wiretest.SeedFile(t, wiretest.NewKey(t), "")
	if _, err := nats.Connect(n.URL, wiretest.NKeyOption(t, stranger)); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("an unknown key: %v, want an authorization violation", err)
	}
	data, _ := os.ReadFile(r.SchoolSeedFile)
	if want := wire.KeeperKeyLine + wiretest.PublicKey(t, r.Control) + "\n"; !strings.Contains(string(data), want) {
		t.Errorf("school seed file lacks %q:\n%s", want, data)
	}
}
