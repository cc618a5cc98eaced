package pond

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"sort"
	"strconv"
	"time"
)

// Runtime faults: Config.Inject is where a pond starts; SetFaults (and
// POST /_pond/faults, for a pond in another process) changes the faults of
// a running pond, so a test can make the target fail mid-run and heal it.
// The fault table is replaced whole, behind an atomic pointer: every
// request sees either the old table or the new one.

// checkFaults returns every problem with a fault table, each naming the
// method.
func checkFaults(faults map[string]Fault) []error {
	var errs []error
	for k, f := range faults {
		if _, ok := MethodTiers[k]; !ok && k != "*" {
			errs = append(errs, fmt.Errorf("unknown method %q", k))
		}
		if f.Latency < 0 || f.Latency > time.Minute {
			errs = append(errs, fmt.Errorf("%s: latency %s out of range 0..1m", k, f.Latency))
		}
		if !(f.Error >= 0 && f.Error <= 1) {
			errs = append(errs, fmt.Errorf("%s: error probability %v out of range 0..1", k, f.Error))
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errs
}

// SetFaults replaces the injected faults of a running pond (nil or empty:
// none). A bad table is refused whole and the faults in force stay.
func (s *Server) SetFaults(faults map[string]Fault) error {
	if errs := checkFaults(faults); len(errs) > 0 {
		return fmt.Errorf("pond: faults: %w", errors.Join(errs...))
	}
	m := maps.Clone(faults)
	if m == nil {
		m = map[string]Fault{}
	}
	s.faults.Store(&m)
	s.log.Info("pond: faults set", "faults", FormatFaults(m))
	return nil
}

// Faults returns the faults in force.
func (s *Server) Faults() map[string]Fault {
	if p := s.faults.Load(); p != nil {
		return maps.Clone(*p)
	}
	return map[string]Fault{}
}

// FormatFaults writes a fault table as ParseInject reads it, one spec per
// method, sorted.
func FormatFaults(faults map[string]Fault) []string {
	out := make([]string, 0, len(faults))
	for m, f := range faults {
		out = append(out, m+"=latency:"+f.Latency.String()+",error:"+strconv.FormatFloat(f.Error, 'g', -1, 64))
	}
	sort.Strings(out)
	return out
}

// faultsBody is the JSON of /_pond/faults: specs as --inject takes them.
type faultsBody struct {
	Faults []string `json:"faults"`
}

// serveFaults answers GET /_pond/faults with the faults in force and
// POST /_pond/faults {"faults": ["auth.test=error:0.1", …]} by replacing
// them ([] heals every method). Only loopback callers may change them: a
// pond listening beyond loopback (--allow-remote) cannot be broken by
// whoever reaches it.
func (s *Server) serveFaults(w http.ResponseWriter, r *http.Request) {
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	if r.Method == http.MethodPost && !fromLoopback(r) {
		reply(http.StatusForbidden, map[string]string{"error": "faults change only from loopback"})
		return
	}
	if r.Method == http.MethodPost {
		var body faultsBody
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			reply(http.StatusBadRequest, map[string]string{"error": "body: " + err.Error() + ` (want {"faults": ["METHOD=latency:DUR,error:P", …]})`})
			return
		}
		if body.Faults == nil {
			reply(http.StatusBadRequest, map[string]string{"error": `faults: give a list, [] for none`})
			return
		}
		m := map[string]Fault{}
		for i, spec := range body.Faults {
			method, f, err := ParseInject(spec)
			if err != nil {
				reply(http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("faults[%d]: %v", i, err)})
				return
			}
			m[method] = f
		}
		if err := s.SetFaults(m); err != nil {
			reply(http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
	}
	reply(http.StatusOK, faultsBody{Faults: FormatFaults(s.Faults())})
}

// fromLoopback reports whether the request came from a loopback address.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
