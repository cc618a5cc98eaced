package state

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/koipond/koipond/wire"
)

// Persister stores records durably. Put and Delete return only once the
// change is durable (a JetStream KV bucket acknowledges them so).
type Persister interface {
	Put(ctx context.Context, key string, value []byte) error
	Delete(ctx context.Context, key string) error
}

// ErrNotFound is returned for a missing object.
var ErrNotFound = errors.New("not found")

// Store is the keeper's state: memdb in front of a Persister.
type Store struct {
	db *memdb.MemDB
	p  Persister

	wl       writeLock // held for a whole Write; guards epoch, auditSeq
	epoch    uint64    // highest switch epoch given out
	auditSeq uint64    // highest audit sequence given out
}

// New returns an empty store writing through p.
func New(p Persister) (*Store, error) {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return nil, fmt.Errorf("state: building the memdb schema: %w", err)
	}
	s := &Store{db: db, p: p}
	s.wl.cond.L = &s.wl.mu
	return s, nil
}

// Epoch returns the highest switch epoch given out so far.
func (s *Store) Epoch() uint64 {
	s.wl.lock(false)
	defer s.wl.unlock()
	return s.epoch
}

// Read returns a consistent read-only view of the store at this instant.
func (s *Store) Read() *Reader { return &Reader{tx: s.db.Txn(false)} }

// record is one persisted change of a Write.
type record struct {
	key   string
	value []byte // nil: delete
	prev  []byte // value before the write; nil: absent
}

// Txn is a write in progress; see Store.Write.
type Txn struct {
	Reader
	s        *Store
	recs     []record
	byKey    map[string]int
	epoch    uint64
	auditSeq uint64
	now      time.Time
}

// Write runs fn in a write transaction. Every object fn changes is
// persisted before the change becomes visible in memdb; if fn or
// persisting fails, nothing is applied. Writes run one at a time; none
// begins while a WriteFirst waits.
func (s *Store) Write(ctx context.Context, fn func(*Txn) error) error {
	s.wl.lock(false)
	defer s.wl.unlock()
	return s.write(ctx, fn)
}

// WriteFirst is Write for what must not wait behind other writes (the
// switches: a stop beats everything): it waits for the write in progress
// only, however many are waiting.
func (s *Store) WriteFirst(ctx context.Context, fn func(*Txn) error) error {
	s.wl.lock(true)
	defer s.wl.unlock()
	return s.write(ctx, fn)
}

// write is a Write; the caller holds the write lock.
func (s *Store) write(ctx context.Context, fn func(*Txn) error) error {
	tx := s.db.Txn(true)
	defer tx.Abort()
	t := &Txn{Reader: Reader{tx: tx}, s: s, byKey: map[string]int{}, epoch: s.epoch, auditSeq: s.auditSeq, now: time.Now()}
	if err := fn(t); err != nil {
		return err
	}
	for i, r := range t.recs {
		var err error
		if r.value == nil {
			err = s.p.Delete(ctx, r.key)
		} else {
			err = s.p.Put(ctx, r.key, r.value)
		}
		if err != nil {
			s.rollback(t.recs[:i])
			return &PersistError{Key: r.key, Bytes: len(r.value), Err: err}
		}
	}
	s.epoch, s.auditSeq = t.epoch, t.auditSeq
	tx.Commit()
	return nil
}

// rollback puts persisted records back to their previous values, best
// effort, with a fresh context (the caller's may be what failed).
func (s *Store) rollback(recs []record) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if r.prev == nil {
			_ = s.p.Delete(ctx, r.key)
		} else {
			_ = s.p.Put(ctx, r.key, r.prev)
		}
	}
}

// AdoptExternal takes in what was written to the Persister around the
// keeper (koipond stop --nats writes the switch and an audit entry to the
// bucket, then publishes): a switch with an epoch higher than any given
// out becomes the switch and the epoch counter continues from it; audit
// entries beyond the last sequence number are added. recs is the whole
// bucket. It reports whether the switch was adopted.
func (s *Store) AdoptExternal(recs map[string][]byte) (bool, error) {
	s.wl.lock(false)
	defer s.wl.unlock()
	tx := s.db.Txn(true)
	defer tx.Abort()
	adopted := false
	epoch, seq := s.epoch, s.auditSeq
	for key, val := range recs {
		switch {
		case key == switchKey:
			g := &GlobalSwitch{}
			if err := json.Unmarshal(val, g); err != nil {
				return false, fmt.Errorf("state: decoding %s: %w", key, err)
			}
			if g.Epoch > s.epoch {
				if err := tx.Insert(TableSwitch, g); err != nil {
					return false, err
				}
				epoch, adopted = g.Epoch, true
			}
		case strings.HasPrefix(key, prefixAudit):
			e := &AuditEntry{}
			if err := json.Unmarshal(val, e); err != nil {
				return false, fmt.Errorf("state: decoding %s: %w", key, err)
			}
			if e.Seq > s.auditSeq {
				if err := tx.Insert(TableAudit, e); err != nil {
					return false, err
				}
				seq = max(seq, e.Seq)
			}
		}
	}
	s.epoch, s.auditSeq = epoch, seq
	tx.Commit()
	return adopted, nil
}

// Now is the time the transaction started: one clock reading per write.
func (t *Txn) Now() time.Time { return t.now }

// NextEpoch returns a switch epoch higher than any given out before. It
// saturates at wire.MaxEpoch instead of wrapping (which would make every
// later switch look older than the last).
func (t *Txn) NextEpoch() uint64 {
	t.epoch = wire.NextEpoch(t.epoch)
	return t.epoch
}

// RaiseEpoch makes e the highest epoch given out, if it is higher; never
// above wire.MaxEpoch.
func (t *Txn) RaiseEpoch(e uint64) { t.epoch = max(t.epoch, min(e, wire.MaxEpoch)) }

// Audit appends an audit entry.
func (t *Txn) Audit(actor, action, object, detail string) error {
	t.auditSeq++
	e := &AuditEntry{Seq: t.auditSeq, At: t.now, Actor: actor, Action: action, Object: object, Detail: detail}
	return put(t, TableAudit, auditKey(e.Seq), e, nil)
}

// encode is a record's JSON, without escaping <, > and & for HTML: a
// behavior file of '<' took six times its size escaped, past NATS's
// max_payload while its blob (base64) fitted.
func encode(v any) ([]byte, error) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// RecordSize is the size of v's record as the store writes it (encode):
// what must fit under the NATS payload limit.
func RecordSize(v any) (int64, error) {
	b, err := encode(v)
	return int64(len(b)), err
}

// PersistError is a Write that failed to persist a record.
type PersistError struct {
	Key   string
	Bytes int // the record's size
	Err   error
}

func (e *PersistError) Error() string {
	return fmt.Sprintf("state: persisting %.80s (%d bytes): %v", e.Key, e.Bytes, e.Err)
}

func (e *PersistError) Unwrap() error { return e.Err }

// put inserts obj into table and records it for persistence under key.
// prev is the object replaced (nil when new).
func put[T any](t *Txn, table, key string, obj, prev *T) error {
	if err := t.tx.Insert(table, obj); err != nil {
		return fmt.Errorf("state: insert into %s: %w", table, err)
	}
	b, err := encode(obj)
	if err != nil {
		return fmt.Errorf("state: encoding %s: %w", key, err)
	}
	return recordChange(t, key, b, prev)
}

// del removes prev, the object stored under key, from table and records
// the deletion for persistence. A nil prev (nothing stored) changes
// nothing.
func del[T any](t *Txn, table, key string, prev *T) error {
	if prev == nil {
		return nil
	}
	if err := t.tx.Delete(table, prev); err != nil {
		return fmt.Errorf("state: delete from %s: %w", table, err)
	}
	return recordChange(t, key, nil, prev)
}

// recordChange notes a change of key for persistence: value is the new
// encoding (nil: delete), prev the object it replaces (nil: absent). prev
// is a typed pointer so that "absent" cannot arrive as a non-nil interface
// holding a nil pointer.
func recordChange[T any](t *Txn, key string, value []byte, prev *T) error {
	var pb []byte
	if prev != nil {
		var err error
		if pb, err = encode(prev); err != nil {
			return fmt.Errorf("state: encoding %s: %w", key, err)
		}
	}
	if i, ok := t.byKey[key]; ok {
		t.recs[i].value = value // keep the first prev: the value before the write
		return nil
	}
	t.byKey[key] = len(t.recs)
	t.recs = append(t.recs, record{key: key, value: value, prev: pb})
	return nil
}

// PutBehaviorSet stores a behavior set.
func (t *Txn) PutBehaviorSet(b *BehaviorSet) error {
	return put(t, TableBehaviorSets, behaviorSetKey(b.Hash), b, t.BehaviorSet(nil, b.Hash))
}

// PutFormation stores a formation.
func (t *Txn) PutFormation(f *Formation) error {
	return put(t, TableFormations, formationKey(f.Hash), f, t.Formation(nil, f.Hash))
}

// PutRun stores a run.
func (t *Txn) PutRun(r *Run) error {
	return put(t, TableRuns, runKey(r.ID), r, t.Run(nil, r.ID))
}

// PutLaunch stores a launch.
func (t *Txn) PutLaunch(l *Launch) error {
	return put(t, TableLaunches, launchKey(l.ID), l, t.Launch(nil, l.ID))
}

// PutSchool stores a school durably (registration, capacity change, and
// now and then its last-seen time).
func (t *Txn) PutSchool(sc *School) error {
	d := *sc
	d.Status = nil // the heartbeat part is not persisted
	if err := t.tx.Insert(TableSchools, sc); err != nil {
		return fmt.Errorf("state: insert into %s: %w", TableSchools, err)
	}
	b, err := encode(&d)
	if err != nil {
		return err
	}
	var prev *School
	if p := t.School(nil, sc.ID); p != nil {
		pd := *p
		pd.Status = nil
		prev = &pd
	}
	return recordChange(t, schoolKey(sc.ID), b, prev)
}

// TouchSchool updates a known school's heartbeat in memory only.
func (t *Txn) TouchSchool(sc *School) error {
	if err := t.tx.Insert(TableSchools, sc); err != nil {
		return fmt.Errorf("state: insert into %s: %w", TableSchools, err)
	}
	return nil
}

// PutAssignment stores a school's range of a run.
func (t *Txn) PutAssignment(a *Assignment) error {
	return put(t, TableAssignments, assignmentKey(a.Run, a.School), a, t.Assignment(nil, a.Run, a.School))
}

// DeleteAssignment removes a school's range of a run.
func (t *Txn) DeleteAssignment(a *Assignment) error {
	return del(t, TableAssignments, assignmentKey(a.Run, a.School), t.Assignment(nil, a.Run, a.School))
}

// PutSwitch stores the global switch.
func (t *Txn) PutSwitch(g *GlobalSwitch) error {
	var prev *GlobalSwitch // at epoch 0 Switch makes one up: none is stored
	if cur := t.Switch(nil); cur.Epoch != 0 {
		prev = cur
	}
	return put(t, TableSwitch, switchKey, g, prev)
}

var safeID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)

func enc(id string) string {
	if safeID.MatchString(id) {
		return id
	}
	return "=" + hex.EncodeToString([]byte(id))
}

func behaviorSetKey(hash string) string { return prefixBehaviorSet + enc(hash) }
func formationKey(hash string) string   { return prefixFormation + enc(hash) }
func runKey(id string) string           { return prefixRun + enc(id) }
func launchKey(id string) string        { return prefixLaunch + enc(id) }
func schoolKey(id string) string        { return prefixSchool + enc(id) }
func assignmentKey(run, school string) string {
	return prefixAssignment + enc(run) + "." + enc(school)
}
func auditKey(seq uint64) string { return prefixAudit + fmt.Sprintf("%020d", seq) }

// Restore rebuilds memdb from persisted records (key → value) in one
// transaction. It must be called once, on an empty store, before any
// Write. Schools holding assignments are given a fresh lease (their
// LastSeen becomes now) so they keep their koi while they reconnect;
// the others keep their persisted LastSeen and count as lost until they
// poll.
// A record that cannot be decoded fails the restore: the keeper must not
// start on state it does not understand.
func (s *Store) Restore(recs map[string][]byte) error {
	s.wl.lock(false)
	defer s.wl.unlock()
	tx := s.db.Txn(true)
	defer tx.Abort()
	now := time.Now()
	var maxEpoch, maxSeq uint64
	for key, val := range recs {
		rec, ok := recordOf(key)
		if !ok {
			return fmt.Errorf("state: restore: unknown record %q", key)
		}
		obj, table := rec.new(), rec.table
		if err := json.Unmarshal(val, obj); err != nil {
			return fmt.Errorf("state: restore: decoding %s: %w", key, err)
		}
		switch o := obj.(type) {
		case *Run:
			maxEpoch = max(maxEpoch, o.Switch.Epoch)
		case *GlobalSwitch:
			maxEpoch = max(maxEpoch, o.Epoch)
		case *AuditEntry:
			maxSeq = max(maxSeq, o.Seq)
		}
		if err := tx.Insert(table, obj); err != nil {
			return fmt.Errorf("state: restore: inserting %s: %w", key, err)
		}
	}
	it, err := tx.Get(TableSchools, indexID)
	if err != nil {
		return fmt.Errorf("state: restore: %w", err)
	}
	var lease []*School
	for obj := it.Next(); obj != nil; obj = it.Next() {
		sc := obj.(*School)
		if a, _ := tx.First(TableAssignments, indexSchool, sc.ID); a != nil {
			lease = append(lease, sc)
		}
	}
	for _, sc := range lease {
		n := *sc
		n.LastSeen = now
		if err := tx.Insert(TableSchools, &n); err != nil {
			return fmt.Errorf("state: restore: %w", err)
		}
	}
	s.epoch, s.auditSeq = max(s.epoch, maxEpoch), max(s.auditSeq, maxSeq)
	tx.Commit()
	return nil
}

// writeLock lets one write run at a time, in the order they came, and a
// switch go first: while a WriteFirst waits, no other write begins. (A
// sync.Mutex would let every write queued before it go first, and writes
// take a while: each record they persist is a NATS round trip.)
type writeLock struct {
	mu      sync.Mutex
	cond    sync.Cond // L is &mu
	busy    bool      // a write holds the lock
	first   int       // WriteFirsts waiting
	next    uint64    // the ticket the next ordinary write takes
	serving uint64    // the ticket whose turn it is
}

func (l *writeLock) lock(first bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if first {
		l.first++
		for l.busy {
			l.cond.Wait()
		}
		l.first--
		l.busy = true
		return
	}
	ticket := l.next
	l.next++
	for l.busy || l.first > 0 || l.serving != ticket {
		l.cond.Wait()
	}
	l.serving++
	l.busy = true
}

func (l *writeLock) unlock() {
	l.mu.Lock()
	l.busy = false
	l.mu.Unlock()
	l.cond.Broadcast()
}
