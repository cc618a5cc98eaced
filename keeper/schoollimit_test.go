package keeper

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// The keeper keeps at most MaxSchools schools: a new one beyond them is
// refused, with an error saying so, counted as a rejection, while the
// known ones are answered; once one has been lost a few leases holding no
// koi, a new one takes its place. Every new id was a school kept for
// ever.
func TestNewSchoolsBeyondTheLimitAreRefused(t *testing.T) {
	k := openKeeper(t, t.TempDir(), func(c *Config) { c.MaxSchools = 3 })
	a, b, c := newFakeSchool(t, k, "a", 10), newFakeSchool(t, k, "b", 10), newFakeSchool(t, k, "c", 10)
	for _, s := range []*fakeSchool{a, b, c} {
		if rep := s.poll(); rep == nil || rep.Error != "" {
			t.Fatalf("school %s: %+v", s.id, rep)
		}
	}
	runSchools(t, a, b)
	nc := schoolConn(t, k)
	defer nc.Close()
	for i := range 50 {
		data, _ := wire.Encode(&wire.PollRequest{School: fmt.Sprintf("new-%d", i), Software: "fake", Capacity: 10, Clock: time.Now()})
		rep := rawPoll(t, nc, data)
		if !strings.Contains(rep.Error, "too many schools") || len(rep.Assignments) != 0 {
			t.Fatalf("new school %d beyond the limit: reply error %q, %d assignments; want refused", i, rep.Error, len(rep.Assignments))
		}
	}
	if got := k.Rejections()["poll: too many schools"]; got != 50 {
		t.Errorf("%d rejections counted as too many schools, want 50 (all: %v)", got, k.Rejections())
	}
	if n := len(k.State().Schools(nil)); n != 3 {
		t.Errorf("%d schools stored, want 3", n)
	}
	if rep := c.poll(); rep == nil || rep.Error != "" {
		t.Errorf("a known school at the limit: %+v", rep)
	}
	// c goes silent: once lost for evictAfter, a new school takes its
	// place; a and b, live, stay.
	cLast := k.State().School(nil, "c").LastSeen
	d := newFakeSchool(t, k, "d", 10)
	wiretest.WaitFor(t, 10*k.cfg.evictAfter(), "d to be taken in", func() error {
		if rep := d.poll(); rep == nil || rep.Error != "" {
			return fmt.Errorf("refused: %+v", rep)
		}
		return nil
	})
	if lost := time.Since(cLast); lost < k.cfg.evictAfter() {
		t.Errorf("d was taken in when c had been silent for %v, under %v", lost, k.cfg.evictAfter())
	}
	var ids []string
	for _, s := range k.State().Schools(nil) {
		ids = append(ids, s.ID)
	}
	if strings.Join(ids, ",") != "a,b,d" {
		t.Errorf("schools stored: %v, want a, b and d", ids)
	}
}
