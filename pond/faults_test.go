package pond

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Faults switched on and off at run time, directly and over HTTP, take
// effect on the next request; a bad table is refused whole; concurrent
// setters and callers are race-free (run with -race).
func TestSetFaultsAtRunTime(t *testing.T) {
	s := openTest(t, Config{})
	mustOK(t, s, 1, "auth.test", nil)
	if err := s.SetFaults(map[string]Fault{"auth.test": {Error: 1}}); err != nil {
		t.Fatal(err)
	}
	if r := call(t, s, Token(1), "auth.test", nil); r.Status != 500 || r.err() != "internal_error" {
		t.Errorf("fault not in force: %d %v", r.Status, r.Body)
	}
	mustOK(t, s, 1, "users.info", map[string]string{"user": "U000001"}) // other methods untouched

	// A bad table changes nothing.
	err := s.SetFaults(map[string]Fault{"auth.test": {}, "nope": {Error: 0.5}, "users.info": {Error: 3}})
	if err == nil || !strings.Contains(err.Error(), `unknown method "nope"`) || !strings.Contains(err.Error(), "users.info: error probability 3") {
		t.Errorf("bad table: %v", err)
	}
	if f := s.Faults(); f["auth.test"].Error != 1 || len(f) != 1 {
		t.Errorf("faults after a refused table: %+v", f)
	}

	post := func(body string) (int, faultsBody) {
		resp, err := http.Post(s.URL()+"/_pond/faults", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out faultsBody
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	// Over HTTP: heal everything, then fail every method.
	if code, out := post(`{"faults": []}`); code != 200 || len(out.Faults) != 0 {
		t.Errorf("heal: %d %+v", code, out)
	}
	mustOK(t, s, 1, "auth.test", nil)
	if code, out := post(`{"faults": ["*=error:1"]}`); code != 200 || len(out.Faults) != 1 || out.Faults[0] != "*=latency:0s,error:1" {
		t.Errorf("set: %d %+v", code, out)
	}
	if r := call(t, s, Token(1), "users.info", map[string]string{"user": "U000001"}); r.Status != 500 {
		t.Errorf("* fault not in force: %d", r.Status)
	}
	for _, bad := range []string{`{"faults": ["auth.test=error:2"]}`, `{"faults": ["nope=error:0.5"]}`, `{"faults": null}`, `{"fault": []}`, `[`} {
		if code, _ := post(bad); code != 400 {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
	if f := s.Faults(); f["*"].Error != 1 || len(f) != 1 {
		t.Errorf("faults after refused posts: %+v", f)
	}

	// A caller beyond loopback may read the faults, not change them. (A
	// crafted RemoteAddr: this machine has no other address to call from.)
	req := httptest.NewRequest("POST", "/_pond/faults", strings.NewReader(`{"faults": []}`))
	req.RemoteAddr = "192.0.2.7:40000"
	rec := httptest.NewRecorder()
	s.serveFaults(rec, req)
	if rec.Code != 403 || len(s.Faults()) != 1 {
		t.Errorf("remote POST: %d, faults %+v", rec.Code, s.Faults())
	}

	// Setters racing callers.
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := range 50 {
				_ = s.SetFaults(map[string]Fault{"auth.test": {Error: float64((i+j)%2) / 2}})
			}
		}()
		go func() {
			defer wg.Done()
			for range 50 {
				call(t, s, Token(1), "auth.test", nil)
			}
		}()
	}
	wg.Wait()
}
