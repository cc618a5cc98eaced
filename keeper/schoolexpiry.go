package keeper

import (
	"fmt"
	"hash/fnv"
	"time"

	"github.com/koipond/koipond/keeper/state"
)

// A school the keeper has heard from was kept for ever, and any holder of
// the school credentials may poll under any id (a school's default id is
// host-pid-random: every restart is a new one). So a school lost for
// longer than SchoolExpiry that holds no koi is forgotten, in memory and
// in the bucket (expireLoop); if it polls again it registers anew.
//
// Nothing needs a lost school's record once it holds no koi: the
// quarantine counts a school lost holding a run's koi in the scheduler
// pass that moves those koi (lostSchoolFailures, then planRanges, in one
// write), which is also when its assignments go; stop tracks name their
// schools by id and take acks from polls. A school holding assignments
// (after a restart, until the scheduler has settled) is not forgotten.
//
// For a restarted keeper to know which schools to forget, a polling
// school's record is written to the bucket again now and then
// (saveEvery): the bucket held each school's registration time as its
// last-seen time, and a restart could not tell a school polling until a
// minute ago from one gone for a week.

// DefaultSchoolExpiry is how long a lost school holding no koi is shown
// before it is forgotten: a day, so that a school that died overnight is
// still there to be looked at in the morning, and far beyond the lease
// and scheduler pass the quarantine needs.
const DefaultSchoolExpiry = 24 * time.Hour

func (c Config) schoolExpiry() time.Duration {
	if c.SchoolExpiry == 0 {
		return DefaultSchoolExpiry
	}
	return c.SchoolExpiry
}

// saveEvery is how often a polling school's record is written to the
// bucket again, so that a restarted keeper knows when it was last seen
// (give or take this much) and forgets, or keeps, it accordingly: an
// eighth of the expiry, at most an hour (5,000 schools: 1.4 writes a
// second).
func (c Config) saveEvery() time.Duration {
	return max(min(c.schoolExpiry()/8, time.Hour), c.PollInterval)
}

// validateSchoolExpiry returns the school expiry's problems (c with
// defaults).
func (c Config) validateSchoolExpiry() []error {
	// A school is forgotten only once lost: shorter than two leases, it
	// would be forgotten while its last koi are still being moved.
	if c.SchoolExpiry != 0 && c.SchoolExpiry < 2*c.Lease {
		return []error{fmt.Errorf("school expiry: %v is shorter than two leases (%v)", c.SchoolExpiry, 2*c.Lease)}
	}
	return nil
}

// saveDue reports whether a polling school's record is to be written to
// the bucket again now: once per saveEvery, each school at its own phase
// so that thousands of schools are not all written in the same second.
func (k *Keeper) saveDue(old *state.School, now time.Time) bool {
	every := k.cfg.saveEvery()
	h := fnv.New64a()
	h.Write([]byte(old.ID))
	phase := time.Duration(h.Sum64() % uint64(every))
	return !old.LastSeen.Add(phase).Truncate(every).Equal(now.Add(phase).Truncate(every))
}

// expireLoop forgets, every so often (jittered), the schools lost for
// longer than SchoolExpiry that hold no koi, until the keeper closes.
func (k *Keeper) expireLoop() {
	every := max(min(k.cfg.schoolExpiry()/8, time.Minute), k.cfg.PollInterval)
	t := time.NewTimer(jitter(every))
	defer t.Stop()
	for {
		select {
		case <-k.ctx.Done():
			return
		case <-t.C:
		}
		if err := k.expireSchools(time.Now()); err != nil && k.ctx.Err() == nil {
			k.log.Warn("forgetting expired schools failed; will retry", "err", err)
		}
		t.Reset(jitter(every))
	}
}

// expireSchools forgets the schools lost for longer than SchoolExpiry
// that hold no koi. Not before the keeper has been open a lease: after a
// restart, a school's last-seen time is what the bucket had (saveEvery)
// until it polls again.
func (k *Keeper) expireSchools(now time.Time) error {
	if now.Sub(k.opened) < k.cfg.Lease {
		return nil
	}
	expiry := k.cfg.schoolExpiry()
	expired := func(r *state.Reader, s *state.School) bool {
		return now.Sub(s.LastSeen) > expiry && len(r.AssignmentsOfSchool(nil, s.ID)) == 0
	}
	r := k.store.Read()
	var due []string
	for _, s := range r.Schools(nil) {
		if expired(r, s) {
			due = append(due, s.ID)
		}
	}
	// A few at a time: each is a round trip to the bucket under the write
	// lock, and a stop waits for the write in progress.
	const perWrite = 64
	gone := 0
	for len(due) > 0 {
		batch := due[:min(perWrite, len(due))]
		due = due[len(batch):]
		n := 0
		err := k.store.Write(k.ctx, func(tx *state.Txn) error {
			n = 0
			for _, id := range batch {
				if s := tx.School(nil, id); s == nil || !expired(&tx.Reader, s) {
					continue // polled again meanwhile, or gone
				}
				if err := tx.DeleteSchool(id); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return err
		}
		gone += n
	}
	if gone > 0 {
		k.schoolGate.open()
		k.log.Info("schools lost for longer than the school expiry forgotten", "schools", gone, "expiry", expiry)
	}
	return nil
}
