package metrics

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestKeyProblem(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want string // a part of the problem; "" for a good key
	}{
		{"api:conversations.history", ""},
		{"http:GET https://example.test/{{ .Index }}", ""},
		{"behavior:écrire un message ✍", ""},
		{"event:\uFFFD", ""}, // the replacement character itself is UTF-8
		{strings.Repeat("k", MaxKeyLen), ""},
		{"", "empty"},
		{strings.Repeat("k", MaxKeyLen+1), "513 bytes long"},
		{"behavior:a\nb", "control character U+000A at byte 10"},
		{"behavior:\x00", "U+0000"},
		{"behavior:\u0085", "U+0085"}, // C1 control
		{"behavior:\xff", "not UTF-8 at byte 9"},
		{"behavior:\xe2\x9c", "not UTF-8"}, // a cut rune
	} {
		got := KeyProblem(tc.key)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("KeyProblem(%.40q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

// CleanKey leaves good keys alone and maps every other one to a good key
// that no other input shares, keeping as much of it as fits.
func TestCleanKey(t *testing.T) {
	for _, good := range []string{"api:chat.postMessage", strings.Repeat("é", MaxKeyLen/2)} {
		if got := CleanKey(good); got != good {
			t.Errorf("CleanKey(%.20q…) changed a good key to %.20q…", good, got)
		}
	}
	long := "http:GET https://example.test/" + strings.Repeat("a", 4000)
	bad := []string{
		"",
		long,
		long + "b", // same first 4,000 bytes: must stay apart
		strings.Repeat("✍", 1000),
		"behavior:a\nb",
		"behavior:a?b~", // looks like a cleaned key's start
		"behavior:a\tb",
		"behavior:\xff\xfe",
		strings.Repeat("\x00", 2*MaxKeyLen),
	}
	seen := map[string]string{}
	for _, key := range bad {
		got := CleanKey(key)
		if p := KeyProblem(got); p != "" {
			t.Errorf("CleanKey(%.20q…) = %.20q…: %s", key, got, p)
		}
		if KeyProblem(key) != "" && len(got) > MaxKeyLen-cleanKeyRoom {
			t.Errorf("CleanKey(%.20q…) is %d bytes, want at most %d (room for step numbers)", key, len(got), MaxKeyLen-cleanKeyRoom)
		}
		if again := CleanKey(key); again != got {
			t.Errorf("CleanKey(%.20q…) not deterministic: %q then %q", key, got, again)
		}
		if CleanKey(got) != got {
			t.Errorf("CleanKey(CleanKey(%.20q…)) changed it again", key)
		}
		if other, ok := seen[got]; ok {
			t.Errorf("CleanKey maps %.20q… and %.20q… both to %.40q", other, key, got)
		}
		seen[got] = key
	}
	if got := CleanKey(long); !strings.HasPrefix(got, long[:MaxKeyLen-cleanKeyRoom-17]) {
		t.Errorf("CleanKey of a long URL key kept %.60q…, want its first %d bytes", got, MaxKeyLen-cleanKeyRoom-17)
	}
	if got := CleanKey("behavior:a\nb"); !strings.HasPrefix(got, "behavior:a?b~") {
		t.Errorf("CleanKey(\"behavior:a\\nb\") = %q, want the control character as '?'", got)
	}
	if got := CleanKey(strings.Repeat("✍", 1000)); !utf8.ValidString(got) {
		t.Errorf("CleanKey cut a rune: %q", got[len(got)-20:])
	}
}

// A Recorder records a key it could not send under its CleanKey, so that
// what it encodes passes a receiver's CheckKeys.
func TestRecorderCleansKeys(t *testing.T) {
	var r Recorder
	long := "behavior:" + strings.Repeat("x", 2*MaxKeyLen)
	r.Series(long).Observe(time.Millisecond, OK)
	r.Observe(long, time.Millisecond, OK)
	r.Count("event:a\x00b", OK)
	if got := r.Series(long).Key(); got != CleanKey(long) {
		t.Errorf("Series(long).Key() = %.40q…, want CleanKey's", got)
	}
	enc, err := r.Snapshot().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var s Snapshot
	if err := s.UnmarshalBinary(enc); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckKeys(); err != nil {
		t.Fatal(err)
	}
	if ss := s.Series[CleanKey(long)]; ss == nil || ss.Total() != 2 {
		t.Errorf("the long key's series %+v, want 2 observations", ss)
	}
	if ss := s.Series[CleanKey("event:a\x00b")]; ss == nil || ss.Total() != 1 {
		t.Errorf("the control character key's series %+v, want 1 observation", ss)
	}
}

// CheckKeys refuses a snapshot with any bad key, naming the first in key
// order and quoting no more than 64 characters of it.
func TestCheckKeysNamesTheFirstBadKeyBriefly(t *testing.T) {
	one := &SeriesSnapshot{Counts: [NumOutcomes]uint64{1}}
	s := &Snapshot{Series: map[string]*SeriesSnapshot{
		"api:ok":                          one,
		"b:" + strings.Repeat("y", 1<<20): one,
		"a:\n":                            one,
	}}
	err := s.CheckKeys()
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), `"a:\n": control character`) {
		t.Fatalf("CheckKeys = %v, want the control character key named", err)
	}
	delete(s.Series, "a:\n")
	err = s.CheckKeys()
	if err == nil || !strings.Contains(err.Error(), "1048578 bytes long") || len(err.Error()) > 200 {
		t.Fatalf("CheckKeys = %.300v (%d bytes), want the long key's length in a short message", err, len(err.Error()))
	}
	delete(s.Series, "b:"+strings.Repeat("y", 1<<20))
	if err := s.CheckKeys(); err != nil {
		t.Fatalf("CheckKeys of good keys: %v", err)
	}
	if err := (&Snapshot{Series: map[string]*SeriesSnapshot{"": one}}).CheckKeys(); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("CheckKeys of an empty key = %v", err)
	}
}

// CleanKeys keeps every count of a stored snapshot's bad keys, under
// their CleanKey, merged into a series already there.
func TestCleanKeysKeepsTheCounts(t *testing.T) {
	var r Recorder
	long := "http:GET /" + strings.Repeat("p", 3*MaxKeyLen)
	for range 3 {
		r.Observe(CleanKey(long), 2*time.Millisecond, OK) // what a new school sends
	}
	r.Observe("api:ok", time.Millisecond, OK)
	s := r.Snapshot()
	// What an old school sent, before keys were bounded.
	s.Series[long] = &SeriesSnapshot{Counts: [NumOutcomes]uint64{5}}
	s.Series["event:\x7f"] = &SeriesSnapshot{Counts: [NumOutcomes]uint64{7}}
	if n := s.CleanKeys(); n != 2 {
		t.Errorf("CleanKeys renamed %d keys, want 2", n)
	}
	if err := s.CheckKeys(); err != nil {
		t.Fatal(err)
	}
	if len(s.Series) != 3 {
		t.Errorf("keys after CleanKeys: %q", s.Keys())
	}
	ss := s.Series[CleanKey(long)]
	if ss == nil || ss.Total() != 8 || ss.Samples() != 3 {
		t.Errorf("merged long key: %+v, want 8 observations, 3 latencies", ss)
	}
	if q, ok := ss.Quantile(0.5); !ok || q < 1980*time.Microsecond || q > 2020*time.Microsecond {
		t.Errorf("merged long key's median %v, want 2ms ±1%%", q)
	}
	if ss := s.Series[CleanKey("event:\x7f")]; ss == nil || ss.Total() != 7 {
		t.Errorf("control character key: %+v, want 7", ss)
	}
	if s.Series["api:ok"].Total() != 1 {
		t.Errorf("a good key changed: %+v", s.Series["api:ok"])
	}
}

// A decoding error quotes at most 64 characters of a key: a hostile
// report's megabyte key must not end up whole in the keeper's log.
func TestDecodeErrorsQuoteKeysBriefly(t *testing.T) {
	key := "api:" + strings.Repeat("z", 1<<20)
	s := &Snapshot{Series: map[string]*SeriesSnapshot{key: {Counts: [NumOutcomes]uint64{3}}}}
	enc, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// The outcome set follows the key: claim every outcome, with one
	// count given.
	at := strings.Index(string(enc), strings.Repeat("z", 1<<20)) + 1<<20
	enc[at] = 0x7f
	var back Snapshot
	err = back.UnmarshalBinary(enc)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), `series "api:zzz`) {
		t.Fatalf("UnmarshalBinary = %.200v", err)
	}
	if len(err.Error()) > 200 {
		t.Errorf("error of %d bytes: %.200s…", len(err.Error()), err)
	}
}
