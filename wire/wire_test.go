package wire

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 23, 12, 0, 0, 123456789, time.UTC)
	msgs := []struct {
		in, out Message
	}{
		{&Control{Epoch: 7, State: Paused, Run: "r1", By: "alice", At: at}, &Control{}},
		{&PollRequest{School: "s1", Capacity: 5000, Clock: at, Epoch: 3, OffsetMS: -1.5,
			Runs:     []RunStatus{{Run: "r1", From: 0, To: 10, Target: 10, Koi: KoiCounts{Connected: 9, Booting: 1}}},
			Launches: []LaunchStatus{{Launch: "l1", Planned: 3, Started: 3}}}, &PollRequest{}},
		{&PollReply{Switch: Control{Epoch: 3, State: Running}, KeeperTime: at, PollIntervalMS: 1000, LeaseMS: 10000,
			Assignments: []Assignment{{Run: "r1", From: 0, To: 10, Ramp: 5, Spec: RunSpec{Name: "n", BehaviorSet: "abc",
				APIBase: "http://127.0.0.1:9090/api", Token: "xoxp-pond-{{.Index}}", TimeScale: 1}}},
			Launches: []Launch{{ID: "l1", Run: "r1", Formation: "def", Start: at, BeginWithinMS: 360000, Count: 2,
				Params: map[string]string{"channel_id": "C1"}}}}, &PollReply{}},
		{&BlobRequest{Kind: BlobBehaviorSet, Hash: "abc"}, &BlobRequest{}},
		{&BlobReply{Kind: BlobFormation, Hash: "def", Files: []File{{Name: "f.json", Data: []byte("{}")}}}, &BlobReply{}},
		{&MetricsReport{School: "s1", Seq: 9, Start: at, End: at.Add(time.Second),
			Runs: []RunMetrics{{Run: "r1", Snapshot: []byte{1, 2, 3}, FramesIn: 4}}}, &MetricsReport{}},
	}
	for _, m := range msgs {
		b, err := Encode(m.in)
		if err != nil {
			t.Fatal(err)
		}
		if err := Decode(b, m.out); err != nil {
			t.Fatalf("%T: %v", m.in, err)
		}
		if !reflect.DeepEqual(m.in, m.out) {
			t.Errorf("%T round trip:\n in  %+v\n out %+v", m.in, m.in, m.out)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name string
		data string
		want error
	}{
		{"unknown newer version", `{"v": 2, "epoch": 1}`, ErrVersion},
		{"no version", `{"epoch": 1}`, ErrVersion},
		{"not JSON", `{"v":`, ErrMalformed},
		{"wrong type", `{"v": 1, "epoch": "one"}`, ErrMalformed},
	}
	for _, tt := range tests {
		var c Control
		if err := Decode([]byte(tt.data), &c); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	// Unknown fields are ignored.
	var c Control
	if err := Decode([]byte(`{"v": 1, "epoch": 4, "state": "stopped", "colour": "red"}`), &c); err != nil || c.Epoch != 4 || c.State != Stopped {
		t.Errorf("unknown field: %+v %v", c, err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"school":"s","runs":[{"run":"r","koi":{}}]}`))
	f.Add([]byte(`{"v":1,"assignments":[{"spec":{}}],"launches":[{"params":{"a":"b"}}]}`))
	// Hostile values: huge numbers, a long id, deep nesting.
	f.Add([]byte(`{"v":1,"school":"` + strings.Repeat("s", 2100) + `","capacity":9223372036854775807,"epoch":18446744073709551615}`))
	f.Add([]byte(`{"v":1,"capacity":1e999,"offset_ms":1.7976931348623157e308,"koi_running":-9223372036854775808}`))
	f.Add([]byte(`{"v":1,"runs":` + strings.Repeat("[", 100000) + `}`))
	f.Add([]byte(`{"v":1,"launches":[{"params":{"a":` + strings.Repeat(`{"a":`, 5000) + `1` + strings.Repeat("}", 5000) + `}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var req PollRequest
		if Decode(data, &req) == nil {
			_ = req.Validate()
		}
		var rep PollReply
		if Decode(data, &rep) == nil {
			_ = rep.Validate()
		}
	})
}
