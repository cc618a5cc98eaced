package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// reasonHeavySnapshot records keys failures under MaxReasons distinct
// reasons each, every one with a sample of the longest kept length.
func reasonHeavySnapshot(t *testing.T, keys int) *Snapshot {
	t.Helper()
	var r Recorder
	sample := strings.Repeat("s", MaxSampleLen)
	for k := range keys {
		s := r.Series(fmt.Sprintf("api:method.%03d", k))
		for i := range MaxReasons + 2 {
			s.ObserveReason(time.Millisecond, Error, fmt.Sprintf("reason_%02d_%s", i, strings.Repeat("r", 40)), sample)
		}
	}
	return r.Snapshot()
}

func TestMarshalBinaryWithinShedsSamplesThenReasons(t *testing.T) {
	snap := reasonHeavySnapshot(t, 100)
	full, err := snap.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Room for everything: the same bytes as MarshalBinary.
	if enc, err := snap.MarshalBinaryWithin(len(full)); err != nil || string(enc) != string(full) {
		t.Fatalf("within the limit: %d bytes, err %v; want the full %d", len(enc), err, len(full))
	}
	decode := func(enc []byte) *Snapshot {
		t.Helper()
		var got Snapshot
		if err := got.UnmarshalBinary(enc); err != nil {
			t.Fatalf("decoding the lean encoding: %v", err)
		}
		return &got
	}
	// Without samples the reasons and their counts stay.
	noSamples := len(full) - 100*MaxReasons*MaxSampleLen/2
	enc, err := snap.MarshalBinaryWithin(noSamples)
	if err != nil || len(enc) > noSamples {
		t.Fatalf("shedding samples: %d bytes (limit %d), err %v", len(enc), noSamples, err)
	}
	got := decode(enc)
	for k, ss := range got.Series {
		if len(ss.Reasons) != MaxReasons || ss.Reasons[0].Count == 0 {
			t.Fatalf("%s: reasons %v, want %d with counts", k, ss.Reasons, MaxReasons)
		}
		for _, r := range ss.Reasons {
			if r.Sample != "" {
				t.Fatalf("%s: sample %q kept past the limit", k, r.Sample)
			}
		}
		if ss.Failures() != snap.Series[k].Failures() {
			t.Fatalf("%s: %d failures, want %d", k, ss.Failures(), snap.Series[k].Failures())
		}
	}
	// Tighter still: reasons go, counts stay.
	enc, err = snap.MarshalBinaryWithin(len(full) / 10)
	if err != nil || len(enc) > len(full)/10 {
		t.Fatalf("shedding reasons: %d bytes (limit %d), err %v", len(enc), len(full)/10, err)
	}
	got = decode(enc)
	for k, ss := range got.Series {
		if len(ss.Reasons) != 0 || ss.Failures() != snap.Series[k].Failures() {
			t.Fatalf("%s: reasons %v, failures %d; want none and %d", k, ss.Reasons, ss.Failures(), snap.Series[k].Failures())
		}
	}
	// The original is untouched.
	for k, ss := range snap.Series {
		if len(ss.Reasons) != MaxReasons || ss.Reasons[0].Sample == "" {
			t.Fatalf("%s: the snapshot itself lost its reasons: %v", k, ss.Reasons)
		}
	}
}
