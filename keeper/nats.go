package keeper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
	"github.com/nats-io/nats.go"
)

// subscribe starts the NATS responders on nc (at Open, and again on every
// new connection, see natsconn.go). Each subscription's handler runs on
// the subscription's own goroutine (owned by nats.go, stopped by Drain in
// Close).
func (k *Keeper) subscribe(nc *nats.Conn) error {
	// Each subject's messages are handled one at a time, and what waits
	// is held in memory up to its pending limits; past them NATS drops
	// messages (counted as "nats: slow consumer"). Metrics bursts from
	// many schools must not be dropped: a deep buffer. A poll or a blob
	// request is answered only while its school still waits for it (5 s),
	// so a backlog longer than that is only memory and delay: a flood of
	// large polls queued 400 MB and kept honest polls waiting past their
	// timeout. An honest poll is a few KiB, a blob request 100 bytes.
	for _, s := range []struct {
		subj      string
		h         nats.MsgHandler
		msgs, mem int
	}{
		{wire.SubjectPoll, k.onPoll, 4096, 16 << 20},
		{wire.SubjectBlob, k.onBlob, 256, 1 << 20},
		{wire.SubjectMetrics, k.onMetrics, 100_000, 512 << 20},
		{wire.SubjectControl, k.onControl, 256, 1 << 20},
	} {
		sub, err := nc.Subscribe(s.subj, s.h)
		if err != nil {
			return fmt.Errorf("keeper: subscribing to %s: %w", s.subj, err)
		}
		if err := sub.SetPendingLimits(s.msgs, s.mem); err != nil {
			return fmt.Errorf("keeper: %s: %w", s.subj, err)
		}
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("keeper: nats flush: %w", err)
	}
	return nil
}

// decodeCause names the rejection cause of a Decode error.
func decodeCause(subject string, err error) string {
	if errors.Is(err, wire.ErrVersion) {
		return subject + ": unknown version"
	}
	return subject + ": malformed"
}

func (k *Keeper) respond(m *nats.Msg, msg wire.Message) {
	if m.Reply == "" {
		return
	}
	data, err := wire.Encode(msg)
	k.send(m, data, err)
}

// send answers m with data, the encoding of a reply (err: why there is
// none), if it may (toSchool).
func (k *Keeper) send(m *nats.Msg, data []byte, err error) {
	if err != nil {
		k.log.Error("encoding a reply", "subject", m.Subject, "err", err)
		return
	}
	if !k.toSchool(m) {
		return
	}
	if err := m.Respond(data); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		k.stats.reject(k.log, m.Subject+": reply failed", err)
	}
}

// toSchool reports whether m's reply subject is a school's inbox
// (wire.SchoolInboxPrefix), counting a rejection when it is not. The
// keeper answers nowhere else: the reply subject is the requester's to
// choose, and the keeper's connection may publish where schools may not,
// its state bucket included. A poll whose reply subject was
// "$KV.koipond.switch" had the keeper write its reply over the global
// switch: a stop undone, or a keeper that would not start again.
func (k *Keeper) toSchool(m *nats.Msg) bool {
	if strings.HasPrefix(m.Reply, wire.SchoolInboxPrefix+".") {
		return true
	}
	k.stats.reject(k.log, m.Subject+": reply subject outside the school inboxes",
		fmt.Errorf("reply subject %.80q does not start with %s.", m.Reply, wire.SchoolInboxPrefix))
	return false
}

func (k *Keeper) onPoll(m *nats.Msg) {
	if !k.toSchool(m) { // nothing to answer, so nothing to do
		return
	}
	start := time.Now()
	var req wire.PollRequest
	if err := wire.Decode(m.Data, &req); err != nil {
		k.stats.reject(k.log, decodeCause("poll", err), err)
		k.respond(m, &wire.PollReply{Error: err.Error(), Assignments: []wire.Assignment{}})
		return
	}
	rep, err := k.Poll(k.ctx, &req)
	if errors.Is(err, wire.ErrInvalid) {
		k.rejectInvalid("poll", err)
		rep = &wire.PollReply{Error: err.Error(), KeeperTime: time.Now(), Assignments: []wire.Assignment{}}
	} else if err != nil {
		k.stats.reject(k.log, pollCause(err), err, "school", req.School)
		rep = &wire.PollReply{Error: err.Error(), KeeperTime: time.Now(), Assignments: []wire.Assignment{}}
	}
	if m.Reply != "" {
		k.respondPoll(m, rep)
	}
	k.stats.pollTook(time.Since(start))
}

// respondPoll sends a poll reply that fits the NATS payload limit: one
// over it is never delivered, and the school's lease runs out, pausing
// every koi it runs. A run spec is as large as its token list (up to the
// API's 1 MiB body), so a school of several such runs, or one run on a
// NATS of 1 MiB payloads (its default), would get no reply at all. The
// largest assignments are left out, then the launches that start last,
// each counted, until the reply fits: the school runs the rest.
func (k *Keeper) respondPoll(m *nats.Msg, rep *wire.PollReply) {
	limit := k.payloadLimit()
	data, err := fitReply(rep, limit, func(cause, id string) {
		k.stats.reject(k.log, cause, fmt.Errorf("%s left out of a poll reply over the NATS payload limit of %d bytes", id, limit))
	})
	k.send(m, data, err)
}

// payloadLimit is the largest message the keeper's NATS connection
// takes (no limit while it has none: nothing is sent then anyway).
func (k *Keeper) payloadLimit() int64 {
	if nc := k.conn(); nc != nil {
		return nc.MaxPayload()
	}
	return math.MaxInt64
}

// fitReply encodes rep, leaving out its largest assignments, then its
// launches that start last, until the encoding is at most limit bytes;
// dropped names each one left out ("poll reply: run over the payload
// limit" with the run id, or the launch's).
func fitReply(rep *wire.PollReply, limit int64, dropped func(cause, id string)) ([]byte, error) {
	for {
		data, err := wire.Encode(rep)
		if err != nil || int64(len(data)) <= limit {
			return data, err
		}
		over := int64(len(data)) - limit
		switch {
		case len(rep.Assignments) > 0:
			// Largest first, as many as the excess needs.
			size := make([]int, len(rep.Assignments))
			order := make([]int, len(rep.Assignments))
			for i := range rep.Assignments {
				b, _ := json.Marshal(&rep.Assignments[i])
				size[i], order[i] = len(b), i
			}
			sort.SliceStable(order, func(a, b int) bool { return size[order[a]] > size[order[b]] })
			drop := map[int]bool{}
			for _, i := range order {
				drop[i] = true
				if over -= int64(size[i]); over <= 0 {
					break
				}
			}
			kept := make([]wire.Assignment, 0, len(rep.Assignments)-len(drop))
			for i, a := range rep.Assignments {
				if drop[i] {
					dropped("poll reply: run over the payload limit", a.Run)
					continue
				}
				kept = append(kept, a)
			}
			rep.Assignments = kept
		case len(rep.Launches) > 0:
			// Those that start last, as many as the excess needs.
			sort.SliceStable(rep.Launches, func(a, b int) bool { return rep.Launches[a].Start.Before(rep.Launches[b].Start) })
			n := len(rep.Launches)
			for n > 0 && over > 0 {
				n--
				b, _ := json.Marshal(&rep.Launches[n])
				over -= int64(len(b))
				dropped("poll reply: launch over the payload limit", rep.Launches[n].ID)
			}
			rep.Launches = rep.Launches[:n]
		default:
			return nil, fmt.Errorf("a poll reply without assignments or launches is %d bytes, over the payload limit of %d", len(data), limit)
		}
	}
}

// Poll records a school's status (a bounded summary, schoolStatus) and
// returns what it should run: the handler of wire.SubjectPoll, callable
// directly. A new school beyond MaxSchools is refused with an error
// wrapping errTooManySchools (schoollimit.go).
func (k *Keeper) Poll(ctx context.Context, req *wire.PollRequest) (*wire.PollReply, error) {
	// Nothing a school claims is acted on before it is within bounds
	// (ids become KV keys; capacities and counts feed the scheduler).
	if err := req.Validate(); err != nil {
		return nil, err
	}
	isNew := false
	var qs []quarantined
	var held map[string]int // the school's assignments: koi per run
	err := k.store.Write(ctx, func(tx *state.Txn) error {
		now := tx.Now()
		qs = nil
		held = heldBy(&tx.Reader, req.School)
		old := tx.School(nil, req.School)
		if old == nil {
			if err := k.admitSchool(tx, req.School, now); err != nil {
				return err
			}
		}
		st := schoolStatus(&tx.Reader, req, held)
		sc := &state.School{ID: req.School, Software: st.Software, Capacity: req.Capacity, FirstSeen: now,
			LastSeen: now, ClockOffsetMS: req.OffsetMS, Status: st}
		var err error
		if old == nil || old.Capacity != sc.Capacity || old.Software != sc.Software || k.saveDue(old, now) {
			if old != nil {
				sc.FirstSeen = old.FirstSeen
			}
			// New, or back from the dead: the scheduler gives it a share.
			isNew = old == nil || old.Capacity != sc.Capacity || now.Sub(old.LastSeen) > k.cfg.Lease
			err = tx.PutSchool(sc)
		} else {
			sc.FirstSeen = old.FirstSeen
			if now.Sub(old.LastSeen) > k.cfg.Lease {
				isNew = true // back from the dead: the scheduler gives it a share
			}
			err = tx.TouchSchool(sc)
		}
		if err != nil {
			return err
		}
		if err := recordLaunchStatus(tx, req); err != nil {
			return err
		}
		if err := k.recordStopAcks(tx, req, now); err != nil {
			return err
		}
		qs, err = k.noteFailuresTx(tx, pressureFailures(req, held, now))
		return err
	})
	k.afterQuarantine(qs)
	if errors.Is(err, errTooManySchools) {
		return nil, err
	}
	if err != nil {
		// Storage trouble must not stop the swarm: answer from what is
		// known, and say so once.
		k.stats.reject(k.log, "poll: not recorded", err, "school", req.School)
		held = heldBy(k.store.Read(), req.School)
	}
	if k.noteRefusals(req, held) || isNew {
		k.Kick()
	}
	return k.pollReply(req.School), nil
}

// heldBy returns the koi of each run assigned to school.
func heldBy(r *state.Reader, school string) map[string]int {
	as := r.AssignmentsOfSchool(nil, school)
	held := make(map[string]int, len(as))
	for _, a := range as {
		held[a.Run] = a.Count()
	}
	return held
}

// refuseFor is how long the scheduler keeps a run away from a school that
// refused it, before offering it again (the school's allow list or the
// blob may have changed).
const refuseFor = time.Minute

type refusal struct{ run, school string }

type refused struct {
	why   string
	until time.Time
}

// noteRefusals remembers runs a school refuses, of those offered to it
// (held: it has an assignment of them), so they are at most its
// assignments; it reports a new one.
func (k *Keeper) noteRefusals(req *wire.PollRequest, held map[string]int) bool {
	added := false
	now := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, rs := range req.Runs {
		if _, offered := held[rs.Run]; rs.Refused == "" || !offered {
			continue
		}
		key := refusal{rs.Run, req.School}
		if r, ok := k.refusals[key]; !ok || now.After(r.until) {
			added = true
			k.log.Warn("school refuses run; its koi go elsewhere", "school", req.School, "run", rs.Run, "reason", rs.Refused, "retry_in", refuseFor)
		}
		k.refusals[key] = refused{why: rs.Refused, until: now.Add(refuseFor)}
	}
	return added
}

// refusing returns the schools refusing a run now, with their reasons.
func (k *Keeper) refusing(run string, now time.Time) map[string]string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out map[string]string
	for key, r := range k.refusals {
		if now.After(r.until) {
			delete(k.refusals, key)
			continue
		}
		if key.run == run {
			if out == nil {
				out = map[string]string{}
			}
			out[key.school] = r.why
		}
	}
	return out
}

// pollReply builds a school's reply from the current state.
func (k *Keeper) pollReply(school string) *wire.PollReply {
	r := k.store.Read()
	g := r.Switch(nil)
	rep := &wire.PollReply{Switch: control(g.Switch, ""), KeeperTime: time.Now(),
		PollIntervalMS: wire.MS(k.cfg.PollInterval), LeaseMS: wire.MS(k.cfg.Lease), Assignments: []wire.Assignment{}}
	for _, a := range r.AssignmentsOfSchool(nil, school) {
		run := r.Run(nil, a.Run)
		if run == nil || !run.Active() || a.Count() <= 0 {
			continue
		}
		rep.Assignments = append(rep.Assignments, wire.Assignment{Run: run.ID, Spec: run.Spec(),
			From: a.From, To: a.To, Ramp: a.Ramp, Switch: control(run.Switch, run.ID)})
	}
	for _, st := range []state.LaunchState{state.LaunchPending, state.LaunchRunning} {
		for _, l := range r.LaunchesIn(nil, st) {
			if !l.Planned() {
				continue
			}
			for _, sh := range l.Shares {
				if sh.School == school && sh.Count > 0 {
					rep.Launches = append(rep.Launches, wire.Launch{ID: l.ID, Run: l.Run, Formation: l.Formation,
						Name: l.Name, Params: l.Params, Start: l.Start, BeginWithinMS: l.BeginWithinMS, Count: sh.Count,
						MetricKey: l.MetricKey})
				}
			}
		}
	}
	k.boundReply(rep)
	k.signReply(rep)
	return rep
}

// boundReply drops from a poll reply every assignment and launch outside
// the wire's bounds, and launches past wire.MaxLaunchesPerMessage (the
// latest to start), counting each as a rejection: a school ignores a
// reply out of bounds whole, switch and lease renewal with it, so one
// record stored before a bound existed would pause every school it is
// sent to. Validation at the API keeps new records within bounds.
func (k *Keeper) boundReply(rep *wire.PollReply) {
	if rep.Validate() == nil {
		return
	}
	as := rep.Assignments[:0]
	for _, a := range rep.Assignments {
		if err := a.Validate(); err != nil {
			k.stats.reject(k.log, "poll reply: assignment out of bounds", err, "run", a.Run)
			continue
		}
		as = append(as, a)
	}
	if len(as) > wire.MaxRunsPerMessage {
		k.stats.reject(k.log, "poll reply: too many assignments", fmt.Errorf("%d runs for one school; sending %d", len(as), wire.MaxRunsPerMessage))
		as = as[:wire.MaxRunsPerMessage]
	}
	rep.Assignments = as
	ls := rep.Launches[:0]
	for _, l := range rep.Launches {
		if err := l.Validate(); err != nil {
			k.stats.reject(k.log, "poll reply: launch out of bounds", err, "launch", l.ID)
			continue
		}
		ls = append(ls, l)
	}
	if len(ls) > wire.MaxLaunchesPerMessage {
		sort.SliceStable(ls, func(i, j int) bool { return ls[i].Start.Before(ls[j].Start) })
		k.stats.reject(k.log, "poll reply: too many launches", fmt.Errorf("%d launches for one school; sending the %d that start first", len(ls), wire.MaxLaunchesPerMessage))
		ls = ls[:wire.MaxLaunchesPerMessage]
	}
	rep.Launches = ls
}

// control converts a stored switch to its wire form.
func control(s state.Switch, run string) wire.Control {
	st := s.State
	if st == "" {
		st = wire.Running
	}
	return wire.Control{Epoch: s.Epoch, State: st, Run: run, By: s.By, At: s.At}
}

// runIdle reports whether a school whose runs are these has none of a
// run's koi left.
func runIdle(runs []wire.RunStatus, run string) bool {
	for _, rs := range runs {
		if rs.Run == run {
			k := rs.Koi
			return k.Booting+k.Connected+k.Reconnecting+k.Paused == 0
		}
	}
	return true
}

// ack records school's confirmation in a stop track; it returns a new
// track, or nil when nothing changed.
func ack(t *state.StopTrack, school string, now time.Time) *state.StopTrack {
	if t == nil || t.Complete() {
		return nil
	}
	expected := false
	for _, s := range t.Expected {
		expected = expected || s == school
	}
	if _, done := t.Acks[school]; !expected || done {
		return nil
	}
	n := *t
	n.Acks = make(map[string]time.Time, len(t.Acks)+1)
	for s, at := range t.Acks {
		n.Acks[s] = at
	}
	n.Acks[school] = now
	if len(n.Acks) == len(n.Expected) {
		n.CompleteAt = now
	}
	return &n
}

// recordStopAcks notes a school's confirmation of the global stop and of
// run stops.
func (k *Keeper) recordStopAcks(tx *state.Txn, req *wire.PollRequest, now time.Time) error {
	g := tx.Switch(nil)
	if g.State == wire.Stopped && req.Epoch >= g.Epoch && req.KoiRunning == 0 && req.WebsocketsOpen == 0 {
		if t := ack(g.Stop, req.School, now); t != nil {
			n := *g
			n.Stop = t
			if err := tx.PutSwitch(&n); err != nil {
				return err
			}
		}
	}
	for _, run := range tx.RunsIn(nil, state.RunStopped) {
		if run.Stop == nil || run.Stop.Complete() || !runIdle(req.Runs, run.ID) {
			continue
		}
		if t := ack(run.Stop, req.School, now); t != nil {
			n := *run
			n.Stop = t
			// A record that cannot change leaves the poll to go on.
			if _, err := k.putRunOrSkip(tx, &n, "poll: a stopped run's record over the NATS payload limit"); err != nil {
				return err
			}
		}
	}
	return nil
}

func (k *Keeper) onBlob(m *nats.Msg) {
	if !k.toSchool(m) {
		return
	}
	k.stats.blobs.Add(1)
	var req wire.BlobRequest
	if err := wire.Decode(m.Data, &req); err != nil {
		k.stats.reject(k.log, decodeCause("blob", err), err)
		k.respond(m, &wire.BlobReply{Error: err.Error()})
		return
	}
	if err := req.Validate(); err != nil {
		k.rejectInvalid("blob", err)
		k.respond(m, &wire.BlobReply{Error: err.Error()})
		return
	}
	k.respondBlob(m, req.Kind, req.Hash)
}

// Blob returns the files of a behavior set or formation by content hash:
// the handler of wire.SubjectBlob.
func (k *Keeper) Blob(kind wire.BlobKind, hash string) *wire.BlobReply {
	rep := &wire.BlobReply{Kind: kind, Hash: hash}
	r := k.store.Read()
	switch kind {
	case wire.BlobBehaviorSet:
		if b := r.BehaviorSet(nil, hash); b != nil {
			for _, f := range b.Files {
				rep.Files = append(rep.Files, wire.File{Name: f.Name, Data: []byte(f.Content)})
			}
		}
	case wire.BlobFormation:
		if f := r.Formation(nil, hash); f != nil {
			rep.Files = []wire.File{{Name: f.File.Name, Data: []byte(f.File.Content)}}
		}
	default:
		rep.Error = fmt.Sprintf("unknown blob kind %q", kind)
		return rep
	}
	if len(rep.Files) == 0 {
		rep.Error = fmt.Sprintf("no %s with hash %q", kind, hash)
	}
	return rep
}

func (k *Keeper) onMetrics(m *nats.Msg) {
	k.stats.reports.Add(1)
	var rep wire.MetricsReport
	if err := wire.Decode(m.Data, &rep); err != nil {
		k.stats.reject(k.log, decodeCause("metrics", err), err)
		return
	}
	if err := rep.Validate(); err != nil {
		k.rejectInvalid("metrics", err)
		return
	}
	k.ingest(&rep)
}

// ingest merges a metrics report into the per-run series.
func (k *Keeper) ingest(rep *wire.MetricsReport) {
	r := k.store.Read()
	var offset time.Duration
	if sc := r.School(nil, rep.School); sc != nil {
		offset = time.Duration(sc.ClockOffsetMS * float64(time.Millisecond))
	}
	at := rep.End.Add(offset)
	now := time.Now()
	if rep.End.IsZero() || at.After(now.Add(time.Minute)) || at.Before(now.Add(-time.Hour)) {
		at = now // a clock we cannot trust: file it under arrival
	}
	known := rep.Runs[:0:0]
	for _, rm := range rep.Runs {
		if r.Run(nil, rm.Run) == nil {
			k.stats.reject(k.log, "metrics: unknown run", fmt.Errorf("run %q", rm.Run), "school", rep.School)
			continue
		}
		known = append(known, rm)
	}
	if len(known) == 0 {
		return
	}
	if !k.replays.fresh(rep, at) {
		k.stats.reject(k.log, "metrics: replayed report", fmt.Errorf("school %q sent seq %d (interval ending %v) again or out of order", rep.School, rep.Seq, rep.End), "school", rep.School)
		return
	}
	for i := range known {
		rm := &known[i]
		if err := k.agg.add(rm.Run, at, rm); errors.Is(err, errStoreFull) {
			k.stats.reject(k.log, "metrics: history not kept (store full)", err, "school", rep.School, "run", rm.Run)
		} else if errors.Is(err, errHistoryStore) {
			k.stats.reject(k.log, "metrics: history not kept (history file failing)", err, "school", rep.School, "run", rm.Run)
		} else if err != nil {
			k.stats.reject(k.log, "metrics: bad snapshot", err, "school", rep.School, "run", rm.Run)
		}
	}
}

// onControl adopts a global switch published around the keeper (by
// koipond stop --nats) with an epoch above the keeper's own, if it carries
// the keeper's signature (checkControl, natsauth.go): an unsigned one is
// counted and dropped, its actor never reaches the audit log.
func (k *Keeper) onControl(m *nats.Msg) {
	var c wire.Control
	if err := wire.Decode(m.Data, &c); err != nil {
		k.stats.reject(k.log, decodeCause("control", err), err)
		return
	}
	if c.Run != "" || !c.State.Valid() {
		return
	}
	if c.Epoch <= k.store.Epoch() {
		return // ours, or older
	}
	if cause, err := k.checkControl(&c, time.Now()); err != nil {
		k.stats.reject(k.log, cause, err, "epoch", c.Epoch)
		return
	}
	ctx, cancel := context.WithTimeout(k.ctx, 10*time.Second)
	defer cancel()
	recs, err := k.kv.Load(ctx)
	adopted := false
	if err == nil {
		if adopted, err = k.store.AdoptExternal(recs); adopted {
			k.log.Warn("switch set around the keeper adopted", "state", c.State, "epoch", c.Epoch, "by", c.By)
		}
	}
	if err == nil && !adopted && c.Epoch > k.store.Epoch() {
		// Published without the bucket: schools follow it, so the keeper
		// must too, or its next switches would be ignored as older.
		err = k.store.Write(ctx, func(tx *state.Txn) error {
			tx.RaiseEpoch(c.Epoch)
			if err := tx.PutSwitch(&state.GlobalSwitch{Switch: state.Switch{State: c.State, Epoch: c.Epoch, By: c.By, At: c.At}}); err != nil {
				return err
			}
			return tx.Audit(c.By, verb(c.State)+" everything (published around the keeper)", "switch", fmt.Sprintf("epoch %d", c.Epoch))
		})
		k.log.Warn("switch published around the keeper adopted", "state", c.State, "epoch", c.Epoch, "by", c.By, "err", err)
	}
	if err != nil {
		k.stats.reject(k.log, "control: not adopted", err, "epoch", c.Epoch)
	}
}

// publishControl sends a switch change to every school at once.
func (k *Keeper) publishControl(c wire.Control) {
	k.signControl(&c)
	data, err := wire.Encode(&c)
	if err == nil {
		err = k.conn().Publish(wire.SubjectControl, data)
	}
	if err == nil {
		err = k.conn().FlushTimeout(2 * time.Second)
	}
	if err != nil {
		// Polls repeat the switch within a second: log, do not fail.
		k.log.Warn("publishing the switch failed; polls will carry it", "err", err, "epoch", c.Epoch)
		return
	}
	k.stats.controls.Add(1)
}
