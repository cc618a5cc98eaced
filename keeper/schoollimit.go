package keeper

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
)

// The keeper keeps at most MaxSchools schools, so that polls under ever
// new ids cannot grow it (the school expiry alone lets a day's worth of
// them in). A new school beyond the limit takes the place of the school
// lost longest, if one has been lost for evictAfter and holds no koi
// (nothing needs its record then; see schoolexpiry.go); else its poll is
// refused, with an error wrapping errTooManySchools, counted as the
// rejection "poll: too many schools". Known schools are always answered.

// DefaultMaxSchools bounds the schools a keeper keeps. At 5,000 koi a
// school, 2,000 schools run wire.MaxKoi; a deployment restarting its
// schools (each start a new id) leaves lost ones behind, which make room.
const DefaultMaxSchools = 5000

// errTooManySchools is wrapped by the refusal of a new school's poll.
var errTooManySchools = errors.New("too many schools")

func (c Config) maxSchools() int {
	if c.MaxSchools == 0 {
		return DefaultMaxSchools
	}
	return c.MaxSchools
}

// evictAfter is how long a school must have been lost, holding no koi,
// before a new school may take its place: a few leases, so that one only
// late (a slow poll, a short partition) is not pushed out.
func (c Config) evictAfter() time.Duration { return 3 * c.Lease }

// validateMaxSchools returns the school limit's problems.
func (c Config) validateMaxSchools() []error {
	if c.MaxSchools < 0 || c.MaxSchools > 1_000_000 {
		return []error{fmt.Errorf("max schools: %d is outside 1 .. 1000000 (0: the default, %d)", c.MaxSchools, DefaultMaxSchools)}
	}
	return nil
}

// pollCause names the rejection of a poll Poll did not handle.
func pollCause(err error) string {
	if errors.Is(err, errTooManySchools) {
		return "poll: too many schools"
	}
	return "poll: not handled"
}

// schoolGate remembers that the keeper is full of schools none of which
// can make room before a time, so that polls under ever new ids are
// refused without a look at every school.
type schoolGate struct {
	mu   sync.Mutex
	full time.Time // before it, a new school is refused at once
}

func (g *schoolGate) closedAt(now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return now.Before(g.full)
}

func (g *schoolGate) close(until time.Time) {
	g.mu.Lock()
	g.full = until
	g.mu.Unlock()
}

// open forgets the gate's time: schools were forgotten.
func (g *schoolGate) open() { g.close(time.Time{}) }

// admitSchool makes room for a new school in a poll's write: nothing
// while the keeper keeps fewer than MaxSchools; else it forgets the
// school lost longest, if that one has been lost for evictAfter and
// holds no koi; else it refuses the school.
func (k *Keeper) admitSchool(tx *state.Txn, id string, now time.Time) error {
	limit := k.cfg.maxSchools()
	refuse := func() error {
		return fmt.Errorf("%w: school %q is new and the keeper keeps %d schools, its limit, all live or lost too recently to make room "+
			"(max schools; a lost school holding no koi makes room %v after its last poll)", errTooManySchools, notify.Clip(id, 80), limit, k.cfg.evictAfter())
	}
	if k.schoolGate.closedAt(now) {
		return refuse()
	}
	if tx.SchoolCount() < limit {
		return nil
	}
	grace := k.cfg.evictAfter()
	var oldest *state.School
	until := now.Add(grace) // the earliest a school may make room
	for _, s := range tx.Schools(nil) {
		switch {
		case now.Sub(s.LastSeen) <= grace:
			until = minTime(until, s.LastSeen.Add(grace))
		case len(tx.AssignmentsOfSchool(nil, s.ID)) > 0:
			// Lost holding koi: it makes room once the scheduler has
			// moved them (it passes twice a poll interval).
			until = minTime(until, now.Add(k.cfg.PollInterval))
		case oldest == nil || s.LastSeen.Before(oldest.LastSeen):
			oldest = s
		}
	}
	if oldest == nil {
		k.schoolGate.close(until)
		return refuse()
	}
	k.log.Info("school forgotten to make room for a new one", "school", oldest.ID, "last_seen", oldest.LastSeen, "new", id, "max_schools", limit)
	return tx.DeleteSchool(oldest.ID)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
