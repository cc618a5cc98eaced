package state

import (
	"fmt"

	"github.com/hashicorp/go-memdb"
)

// Table names.
const (
	TableBehaviorSets = "behavior_sets"
	TableFormations   = "formations"
	TableRuns         = "runs"
	TableLaunches     = "launches"
	TableSchools      = "schools"
	TableAssignments  = "assignments"
	TableSwitch       = "switch"
	TableAudit        = "audit"
)

// Index names.
const (
	indexID     = "id"
	indexName   = "name"
	indexState  = "state"
	indexRun    = "run"
	indexSchool = "school"
)

// schema returns the memdb schema of every table.
func schema() *memdb.DBSchema {
	s := &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{}}
	for _, t := range []*memdb.TableSchema{
		behaviorSetsTable(), formationsTable(), runsTable(), launchesTable(),
		schoolsTable(), assignmentsTable(), switchTable(), auditTable(), reportsTable(),
		checkpointsTable(), guardrailsTable(),
	} {
		s.Tables[t.Name] = t
	}
	for _, t := range notifyTables() {
		s.Tables[t.Name] = t
	}
	return s
}

func behaviorSetsTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableBehaviorSets, Indexes: map[string]*memdb.IndexSchema{
		// id: a set by content hash (API get, school blob fetch, run
		// validation).
		indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Hash"}},
		// name: versions of a name in order (latest version, next version
		// number, list by name).
		indexName: {Name: indexName, Unique: true, Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
			&memdb.StringFieldIndex{Field: "Name"}, &memdb.IntFieldIndex{Field: "Version"}}}},
	}}
}

func formationsTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableFormations, Indexes: map[string]*memdb.IndexSchema{
		// id: a formation by content hash (API get, launch creation, blob
		// fetch).
		indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Hash"}},
		// name: versions of a name in order (latest, next version number).
		indexName: {Name: indexName, Unique: true, Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
			&memdb.StringFieldIndex{Field: "Name"}, &memdb.IntFieldIndex{Field: "Version"}}}},
	}}
}

func runsTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableRuns, Indexes: map[string]*memdb.IndexSchema{
		// id: a run by id (API get, patch, switch; poll reply specs).
		indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
		// state: the runs in one state (the scheduler lists running and
		// paused runs every pass; polls and the scheduler follow the stops
		// of stopped runs).
		indexState: {Name: indexState, Indexer: &memdb.StringFieldIndex{Field: "State"}},
	}}
}

func launchesTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableLaunches, Indexes: map[string]*memdb.IndexSchema{
		// id: a launch by id (API get, cancel; school launch status).
		indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
		// run: the launches of one run (run detail view).
		indexRun: {Name: indexRun, Indexer: &memdb.StringFieldIndex{Field: "Run"}},
		// state: pending and running launches (planning, state
		// transitions, poll replies).
		indexState: {Name: indexState, Indexer: &memdb.StringFieldIndex{Field: "State"}},
	}}
}

func schoolsTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableSchools, Indexes: map[string]*memdb.IndexSchema{
		// id: a school by id (every poll; scheduler lists all).
		indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
	}}
}

func assignmentsTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableAssignments, Indexes: map[string]*memdb.IndexSchema{
		// id: one run's range on one school (scheduler updates).
		indexID: {Name: indexID, Unique: true, Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
			&memdb.StringFieldIndex{Field: "Run"}, &memdb.StringFieldIndex{Field: "School"}}}},
		// school: everything one school runs (every poll reply).
		indexSchool: {Name: indexSchool, Indexer: &memdb.StringFieldIndex{Field: "School"}},
		// run: where a run's koi are (scheduler pass per run, run view).
		indexRun: {Name: indexRun, Indexer: &memdb.StringFieldIndex{Field: "Run"}},
	}}
}

func switchTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableSwitch, Indexes: map[string]*memdb.IndexSchema{
		// id: the one global switch row (every poll reply, control API).
		indexID: {Name: indexID, Unique: true, Indexer: constIndex("global")},
	}}
}

func auditTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableAudit, Indexes: map[string]*memdb.IndexSchema{
		// id: entries in sequence order (audit API, newest first).
		indexID: {Name: indexID, Unique: true, Indexer: &memdb.UintFieldIndex{Field: "Seq"}},
	}}
}

// constIndex indexes every object under one value: for one-row tables.
type constIndex string

func (c constIndex) FromObject(any) (bool, []byte, error) {
	return true, []byte(string(c) + "\x00"), nil
}

func (c constIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 0 {
		return nil, fmt.Errorf("constIndex takes no arguments, got %d", len(args))
	}
	return []byte(string(c) + "\x00"), nil
}

var _ memdb.SingleIndexer = constIndex("")
