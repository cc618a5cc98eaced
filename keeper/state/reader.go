package state

import (
	"github.com/hashicorp/go-memdb"
	"github.com/koipond/koipond/wire"
)

// Reader reads a consistent view of the store. Every method takes a watch
// set (nil when the caller will not block); the channels it gains fire when
// what was read changes. Objects returned must not be modified.
type Reader struct {
	tx *memdb.Txn
}

// first returns the object at index = args, or nil.
func first[T any](r *Reader, ws memdb.WatchSet, table, index string, args ...any) *T {
	ch, obj, err := r.tx.FirstWatch(table, index, args...)
	if err != nil {
		panic("state: " + err.Error()) // schema and argument mismatch: a programming error
	}
	ws.Add(ch)
	if obj == nil {
		return nil
	}
	return obj.(*T)
}

// all returns every object at index = args.
func all[T any](r *Reader, ws memdb.WatchSet, table, index string, args ...any) []*T {
	it, err := r.tx.Get(table, index, args...)
	if err != nil {
		panic("state: " + err.Error())
	}
	ws.Add(it.WatchCh())
	var out []*T
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*T))
	}
	return out
}

// latest returns the highest version stored under name in a table indexed
// by name then version, or nil. The index is searched by prefix, so the
// objects of longer names starting with name are skipped.
func latest[T any](r *Reader, ws memdb.WatchSet, table, name string, nameOf func(*T) string) *T {
	var last *T
	for _, o := range all[T](r, ws, table, indexName+"_prefix", name) {
		if nameOf(o) == name {
			last = o
		}
	}
	return last
}

// BehaviorSet returns the set with the given hash, or nil.
func (r *Reader) BehaviorSet(ws memdb.WatchSet, hash string) *BehaviorSet {
	return first[BehaviorSet](r, ws, TableBehaviorSets, indexID, hash)
}

// BehaviorSets returns every set, by name then version.
func (r *Reader) BehaviorSets(ws memdb.WatchSet) []*BehaviorSet {
	return all[BehaviorSet](r, ws, TableBehaviorSets, indexName+"_prefix")
}

// LatestBehaviorSet returns the highest version stored under name, or nil.
func (r *Reader) LatestBehaviorSet(ws memdb.WatchSet, name string) *BehaviorSet {
	return latest(r, ws, TableBehaviorSets, name, func(b *BehaviorSet) string { return b.Name })
}

// Formation returns the formation with the given hash, or nil.
func (r *Reader) Formation(ws memdb.WatchSet, hash string) *Formation {
	return first[Formation](r, ws, TableFormations, indexID, hash)
}

// Formations returns every formation, by name then version.
func (r *Reader) Formations(ws memdb.WatchSet) []*Formation {
	return all[Formation](r, ws, TableFormations, indexName+"_prefix")
}

// LatestFormation returns the highest version stored under name, or nil.
func (r *Reader) LatestFormation(ws memdb.WatchSet, name string) *Formation {
	return latest(r, ws, TableFormations, name, func(f *Formation) string { return f.Name })
}

// Run returns the run with the given id, or nil.
func (r *Reader) Run(ws memdb.WatchSet, id string) *Run {
	return first[Run](r, ws, TableRuns, indexID, id)
}

// Runs returns every run, by id.
func (r *Reader) Runs(ws memdb.WatchSet) []*Run {
	return all[Run](r, ws, TableRuns, indexID)
}

// RunsIn returns the runs in one state, by id.
func (r *Reader) RunsIn(ws memdb.WatchSet, st RunState) []*Run {
	return all[Run](r, ws, TableRuns, indexState, string(st))
}

// ActiveRuns returns the running and paused runs, by id.
func (r *Reader) ActiveRuns(ws memdb.WatchSet) []*Run {
	out := all[Run](r, ws, TableRuns, indexState, string(RunRunning))
	out = append(out, all[Run](r, ws, TableRuns, indexState, string(RunPaused))...)
	return out
}

// Launch returns the launch with the given id, or nil.
func (r *Reader) Launch(ws memdb.WatchSet, id string) *Launch {
	return first[Launch](r, ws, TableLaunches, indexID, id)
}

// Launches returns every launch, by id.
func (r *Reader) Launches(ws memdb.WatchSet) []*Launch {
	return all[Launch](r, ws, TableLaunches, indexID)
}

// LaunchesOfRun returns one run's launches.
func (r *Reader) LaunchesOfRun(ws memdb.WatchSet, run string) []*Launch {
	return all[Launch](r, ws, TableLaunches, indexRun, run)
}

// LaunchesIn returns the launches in one state.
func (r *Reader) LaunchesIn(ws memdb.WatchSet, st LaunchState) []*Launch {
	return all[Launch](r, ws, TableLaunches, indexState, string(st))
}

// School returns the school with the given id, or nil.
func (r *Reader) School(ws memdb.WatchSet, id string) *School {
	return first[School](r, ws, TableSchools, indexID, id)
}

// Schools returns every school ever seen, by id.
func (r *Reader) Schools(ws memdb.WatchSet) []*School {
	return all[School](r, ws, TableSchools, indexID)
}

// Assignment returns a run's range on a school, or nil.
func (r *Reader) Assignment(ws memdb.WatchSet, run, school string) *Assignment {
	return first[Assignment](r, ws, TableAssignments, indexID, run, school)
}

// AssignmentsOfSchool returns everything a school runs.
func (r *Reader) AssignmentsOfSchool(ws memdb.WatchSet, school string) []*Assignment {
	return all[Assignment](r, ws, TableAssignments, indexSchool, school)
}

// AssignmentsOfRun returns where a run's koi are.
func (r *Reader) AssignmentsOfRun(ws memdb.WatchSet, run string) []*Assignment {
	return all[Assignment](r, ws, TableAssignments, indexRun, run)
}

// Assignments returns every assignment.
func (r *Reader) Assignments(ws memdb.WatchSet) []*Assignment {
	return all[Assignment](r, ws, TableAssignments, indexID)
}

// Switch returns the global switch; before any change it is running at
// epoch 0.
func (r *Reader) Switch(ws memdb.WatchSet) *GlobalSwitch {
	if g := first[GlobalSwitch](r, ws, TableSwitch, indexID); g != nil {
		return g
	}
	return &GlobalSwitch{Switch: Switch{State: wire.Running}}
}

// Audit returns up to limit entries with Seq < before (0: from the
// newest), newest first.
func (r *Reader) Audit(ws memdb.WatchSet, before uint64, limit int) []*AuditEntry {
	var it memdb.ResultIterator
	var err error
	if before == 0 {
		it, err = r.tx.GetReverse(TableAudit, indexID)
	} else {
		it, err = r.tx.ReverseLowerBound(TableAudit, indexID, before-1)
	}
	if err != nil {
		panic("state: " + err.Error())
	}
	ws.Add(it.WatchCh())
	var out []*AuditEntry
	for obj := it.Next(); obj != nil && len(out) < limit; obj = it.Next() {
		out = append(out, obj.(*AuditEntry))
	}
	return out
}
