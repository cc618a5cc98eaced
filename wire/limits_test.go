package wire

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestValidateRejects(t *testing.T) {
	at := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	ok := func() *PollRequest {
		return &PollRequest{School: "host-1.example_2", Capacity: 5000, Clock: at, OffsetMS: -3.5,
			Runs:     []RunStatus{{Run: "r1", From: 0, To: 10, Target: 10, Koi: KoiCounts{Connected: 10}}},
			Launches: []LaunchStatus{{Launch: "l1", Planned: 2, Started: 1, FirstStart: at, Offsets: offsetBins(3)}}}
	}
	if err := ok().Validate(); err != nil {
		t.Fatalf("a good poll: %v", err)
	}
	tests := []struct {
		name  string
		edit  func(*PollRequest)
		field string
	}{
		// The id of 2,100 characters that overflowed NATS's control line
		// as a hex KV key.
		{"long id", func(p *PollRequest) { p.School = strings.Repeat("a", 2100) }, "school"},
		{"id one too long", func(p *PollRequest) { p.School = strings.Repeat("a", MaxSchoolID+1) }, "school"},
		{"empty id", func(p *PollRequest) { p.School = "" }, "school"},
		{"id with a space", func(p *PollRequest) { p.School = "a b" }, "school"},
		{"id with a KV wildcard", func(p *PollRequest) { p.School = "a.>" }, "school"},
		{"id starting with a dot", func(p *PollRequest) { p.School = ".a" }, "school"},
		{"id with a newline", func(p *PollRequest) { p.School = "a\r\nPUB x 1" }, "school"},
		// Capacity 2^63-1 overflowed the scheduler's sum of free capacity.
		{"huge capacity", func(p *PollRequest) { p.Capacity = math.MaxInt64 }, "capacity"},
		{"negative capacity", func(p *PollRequest) { p.Capacity = -1 }, "capacity"},
		{"capacity over the max", func(p *PollRequest) { p.Capacity = MaxCapacity + 1 }, "capacity"},
		{"negative koi running", func(p *PollRequest) { p.KoiRunning = -5 }, "koi_running"},
		{"huge websockets", func(p *PollRequest) { p.WebsocketsOpen = math.MaxInt64 }, "websockets_open"},
		{"clock in year 1", func(p *PollRequest) { p.Clock = time.Date(1, 1, 2, 0, 0, 0, 0, time.UTC) }, "clock"},
		{"clock in year 9999", func(p *PollRequest) { p.Clock = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC) }, "clock"},
		{"offset of 1e300 ms", func(p *PollRequest) { p.OffsetMS = 1e300 }, "offset_ms"},
		{"too many runs", func(p *PollRequest) { p.Runs = make([]RunStatus, MaxRunsPerMessage+1) }, "runs"},
		{"run without id", func(p *PollRequest) { p.Runs[0].Run = "" }, "runs.run"},
		{"reversed range", func(p *PollRequest) { p.Runs[0].From = 20 }, "runs.to"},
		{"negative connected", func(p *PollRequest) { p.Runs[0].Koi.Connected = -1 }, "runs.koi.connected"},
		{"huge failed", func(p *PollRequest) { p.Runs[0].Koi.Failed = math.MaxInt64 }, "runs.koi.failed"},
		{"long refusal", func(p *PollRequest) { p.Runs[0].Refused = strings.Repeat("x", MaxText+1) }, "runs.refused"},
		{"long pressure reason", func(p *PollRequest) { p.Runs[0].Pressure = strings.Repeat("x", MaxText+1) }, "runs.pressure"},
		{"pressure in year 9999", func(p *PollRequest) { p.Runs[0].PressureAt = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC) }, "runs.pressure_at"},
		// One poll listing a run three times, each with another pressure
		// episode, counted as three failures: a quarantine.
		{"a run twice", func(p *PollRequest) { p.Runs = append(p.Runs, p.Runs[0]) }, "runs.run"},
		{"a launch twice", func(p *PollRequest) { p.Launches = append(p.Launches, p.Launches[0]) }, "launches.launch"},
		{"too many launches", func(p *PollRequest) { p.Launches = make([]LaunchStatus, MaxLaunchesPerMessage+1) }, "launches"},
		{"huge started", func(p *PollRequest) { p.Launches[0].Started = math.MaxInt64 }, "launches.started"},
		{"huge finished", func(p *PollRequest) { p.Launches[0].Finished = math.MaxInt64 }, "launches.finished"},
		{"negative failed", func(p *PollRequest) { p.Launches[0].Failed = -1 }, "launches.failed"},
		{"huge cancelled", func(p *PollRequest) { p.Launches[0].Cancelled = MaxKoi + 1 }, "launches.cancelled"},
		// Start offsets: 64 bins or none, never more starts than started.
		{"offsets one bin short", func(p *PollRequest) { p.Launches[0].Offsets = p.Launches[0].Offsets[:LaunchOffsetBins-1] }, "launches.offsets"},
		{"offsets one bin over", func(p *PollRequest) { p.Launches[0].Offsets = append(p.Launches[0].Offsets, 0) }, "launches.offsets"},
		{"a million offset bins", func(p *PollRequest) { p.Launches[0].Offsets = make([]uint32, 1<<20) }, "launches.offsets"},
		{"more binned than started", func(p *PollRequest) { p.Launches[0].Offsets = offsetBins(0, 5) }, "launches.offsets"},
		{"every bin at the max", func(p *PollRequest) {
			for i := range p.Launches[0].Offsets {
				p.Launches[0].Offsets[i] = math.MaxUint32
			}
		}, "launches.offsets"},
	}
	for _, tt := range tests {
		p := ok()
		tt.edit(p)
		err := p.Validate()
		var fe *FieldError
		if !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("%s: err = %v, want a FieldError on %s", tt.name, err, tt.field)
			continue
		}
		if len(err.Error()) > 300 {
			t.Errorf("%s: the error quotes too much input (%d bytes)", tt.name, len(err.Error()))
		}
	}
}

// offsetBins returns LaunchOffsetBins bins with one start in each bin
// given.
func offsetBins(bins ...int) []uint32 {
	out := make([]uint32, LaunchOffsetBins)
	for _, b := range bins {
		out[b]++
	}
	return out
}

func TestValidateReplies(t *testing.T) {
	at := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	ok := func() *PollReply {
		return &PollReply{Switch: Control{Epoch: 1, State: Running}, KeeperTime: at, PollIntervalMS: 1000, LeaseMS: 10000,
			Assignments: []Assignment{{Run: "r1", From: 0, To: 10, Ramp: 5, Spec: RunSpec{TimeScale: 1}}},
			Launches:    []Launch{{ID: "l1", Run: "r1", Formation: "f", Start: at, BeginWithinMS: 1000, Count: 3}}}
	}
	if err := ok().Validate(); err != nil {
		t.Fatalf("a good reply: %v", err)
	}
	tests := []struct {
		name  string
		edit  func(*PollReply)
		field string
	}{
		{"unknown switch state", func(p *PollReply) { p.Switch.State = "exploded" }, "switch.state"},
		{"negative lease", func(p *PollReply) { p.LeaseMS = -1 }, "lease_ms"},
		{"lease of 292 years", func(p *PollReply) { p.LeaseMS = math.MaxInt64 }, "lease_ms"},
		{"huge range", func(p *PollReply) { p.Assignments[0].To = math.MaxInt64 }, "assignments.to"},
		{"negative from", func(p *PollReply) { p.Assignments[0].From = -10 }, "assignments.from"},
		{"negative ramp", func(p *PollReply) { p.Assignments[0].Ramp = -1 }, "assignments.ramp"},
		{"huge ramp", func(p *PollReply) { p.Assignments[0].Ramp = 1e300 }, "assignments.ramp"},
		{"huge time scale", func(p *PollReply) { p.Assignments[0].Spec.TimeScale = 1e300 }, "assignments.spec.time_scale"},
		{"launch count", func(p *PollReply) { p.Launches[0].Count = math.MaxInt64 }, "launches.count"},
		{"launch window", func(p *PollReply) { p.Launches[0].BeginWithinMS = math.MaxInt64 }, "launches.begin_within_ms"},
		{"launch without start", func(p *PollReply) { p.Launches[0].Start = time.Time{} }, "launches.start"},
		{"too many subprotocols", func(p *PollReply) {
			p.Assignments[0].Spec.WebsocketSubprotocols = make([]string, MaxSubprotocols+1)
		}, "assignments.spec.websocket_subprotocols"},
		{"long subprotocol", func(p *PollReply) {
			p.Assignments[0].Spec.WebsocketSubprotocols = []string{strings.Repeat("p", MaxText+1)}
		}, "assignments.spec.websocket_subprotocols"},
		{"too many websocket headers", func(p *PollReply) {
			p.Assignments[0].Spec.WebsocketHeaders = map[string]string{}
			for i := range MaxWebsocketHeaders + 1 {
				p.Assignments[0].Spec.WebsocketHeaders[strings.Repeat("h", i+1)] = "v"
			}
		}, "assignments.spec.websocket_headers"},
		{"long websocket header name", func(p *PollReply) {
			p.Assignments[0].Spec.WebsocketHeaders = map[string]string{strings.Repeat("h", MaxText+1): "v"}
		}, "assignments.spec.websocket_headers.name"},
		{"long websocket header value", func(p *PollReply) {
			p.Assignments[0].Spec.WebsocketHeaders = map[string]string{"X-Token": strings.Repeat("v", MaxTemplate+1)}
		}, "assignments.spec.websocket_headers.value"},
		{"too many params", func(p *PollReply) {
			p.Launches[0].Params = map[string]string{}
			for i := range MaxParams + 1 {
				p.Launches[0].Params[strings.Repeat("k", i+1)] = "v"
			}
		}, "launches.params"},
	}
	for _, tt := range tests {
		p := ok()
		tt.edit(p)
		var fe *FieldError
		if err := p.Validate(); !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("%s: err = %v, want a FieldError on %s", tt.name, err, tt.field)
		}
	}
	// Reports and blob requests.
	rep := &MetricsReport{School: "s1", Start: at, End: at, Runs: []RunMetrics{{Run: "r1", Snapshot: make([]byte, MaxSnapshot+1)}}}
	if err := rep.Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("oversized snapshot: %v", err)
	}
	rep.Runs[0].Snapshot, rep.Runs[0].BytesIn = nil, math.MaxUint64
	if err := rep.Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("traffic that would wrap the keeper's sums: %v", err)
	}
	rep.Runs[0].BytesIn = 0
	if err := rep.Validate(); err != nil {
		t.Errorf("a good report: %v", err)
	}
	rep.Runs = append(rep.Runs, rep.Runs[0])
	var fe *FieldError
	if err := rep.Validate(); !errors.As(err, &fe) || fe.Field != "runs.run" {
		t.Errorf("a run twice, merged twice: %v", err)
	}
	if err := (&BlobRequest{Kind: "secrets", Hash: "h"}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown blob kind: %v", err)
	}
	if err := (&BlobRequest{Kind: BlobFormation, Hash: strings.Repeat("f", MaxID+1)}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("long hash: %v", err)
	}
}

// Every message decoded from hostile bytes either fails Decode or
// Validate, or is within its bounds; nothing panics.
func FuzzValidate(f *testing.F) {
	f.Add([]byte(`{"v":1,"school":"` + strings.Repeat("a", 2100) + `","capacity":9223372036854775807}`))
	f.Add([]byte(`{"v":1,"school":"s","capacity":1e400,"offset_ms":-1e308,"clock":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"v":1,"assignments":[{"run":"r","from":-1,"to":9223372036854775807,"ramp":1e308}]}`))
	f.Add([]byte(`{"v":1,"school":"s","runs":[{"run":"r","koi":{"connected":-9223372036854775808}}],"x":` +
		strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, m := range []interface {
			Message
			Validate() error
		}{&PollRequest{}, &PollReply{}, &MetricsReport{}, &BlobRequest{}, &BlobReply{}, &Control{}} {
			if Decode(data, m) != nil || m.Validate() != nil {
				continue
			}
			if p, ok := m.(*PollRequest); ok && (p.Capacity > MaxCapacity || len(p.School) > MaxSchoolID || CheckSchoolID(p.School) != nil) {
				t.Fatalf("valid poll out of bounds: %+v", p)
			}
			if _, err := json.Marshal(m); err != nil {
				t.Fatalf("a valid message does not encode: %v", err)
			}
		}
	})
}

// BenchmarkValidatePoll is the cost Validate adds to every poll the
// keeper answers (a school with 20 runs and 5 launches).
func BenchmarkValidatePoll(b *testing.B) {
	at := time.Now()
	p := &PollRequest{School: "school-042", Capacity: 5000, Clock: at}
	for i := range 20 {
		p.Runs = append(p.Runs, RunStatus{Run: "run-" + strings.Repeat("x", i), From: i * 100, To: i*100 + 100, Target: 100, Koi: KoiCounts{Connected: 100}})
	}
	for range 5 {
		p.Launches = append(p.Launches, LaunchStatus{Launch: "l", Planned: 5, Started: 5, FirstStart: at})
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}
