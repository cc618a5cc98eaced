package school_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/school"
	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// `koipond school --id` of 2,100 characters used to reach the keeper and
// break its NATS connection; the school refuses it at Validate now, with
// a message that says what is wrong without echoing the whole id.
func TestConfigRefusesBadIDs(t *testing.T) {
	for _, tc := range []struct {
		id, want string
	}{
		{strings.Repeat("x", 2100), "longer than 128 characters"},
		{"has space", "only letters, digits"},
		{"a.>", "only letters, digits"},
		{"-leading", "only letters, digits"},
	} {
		cfg := school.Config{ID: tc.id, NATSURL: "nats://127.0.0.1:1"}
		errs := cfg.Validate()
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), "id: ") || !strings.Contains(errs[0].Error(), tc.want) {
			t.Errorf("id %.20q: errors %v, want one saying %q", tc.id, errs, tc.want)
			continue
		}
		if n := len(errs[0].Error()); n > 200 {
			t.Errorf("id %.20q: the error is %d bytes long", tc.id, n)
		}
		if _, err := school.Open(context.Background(), cfg); err == nil {
			t.Errorf("id %.20q: Open accepted it", tc.id)
		}
	}
	// The default id (host-pid-random) is always acceptable.
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	s := openSchool(t, url, school.Config{})
	if err := wire.CheckSchoolID(s.ID()); err != nil {
		t.Errorf("default id %q: %v", s.ID(), err)
	}
}

// A poll reply outside its bounds (a peer that lies about ranges) is
// counted and ignored: the school starts no koi from it.
func TestLyingPollReplyIgnored(t *testing.T) {
	url := wiretest.StartNATS(t, wiretest.NATSConfig{}).URL
	k := newFakeKeeper(t, url)
	hash := addSet(t, k, `{"behaviors": {}}`)
	k.set(func(k *fakeKeeper) {
		k.assignments["*"] = []wire.Assignment{{Run: "huge", From: 0, To: math.MaxInt64, Ramp: math.MaxFloat64,
			Spec: wire.RunSpec{BehaviorSet: hash, APIBase: "http://127.0.0.1:1/api"}}}
	})
	s := openSchool(t, url, school.Config{ID: "s1"})
	wiretest.Until(t, 5*time.Second, "lying replies counted", func() bool { return s.Status().BadMessages >= 2 })
	if st := s.Status(); st.KoiRunning != 0 {
		t.Errorf("the school acted on a lying reply: %+v", st)
	}
	if pr, ok := k.lastPoll("s1"); !ok || len(pr.Runs) != 0 {
		t.Errorf("the school reports runs from a lying reply: %+v", pr.Runs)
	}
}
