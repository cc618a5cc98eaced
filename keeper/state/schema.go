package state

import (
	"fmt"
	"strings"

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
	// TableReports holds one report per ended run.
	TableReports = "reports"
	// TableCheckpoints holds one metrics checkpoint per run still waiting
	// for its final report.
	TableCheckpoints = "checkpoints"
	// TableGuardrails holds the one row of global guardrails.
	TableGuardrails = "guardrails"
	// Notification webhooks, event triggers and the signatures of trigger
	// calls already accepted (replay protection).
	TableWebhooks    = "webhooks"
	TableTriggers    = "triggers"
	TableTriggerSeen = "trigger_seen"
)

// Keys of persisted records. Ids made of safe characters are used as they
// are; any other id is hex-encoded behind "=", which no safe id starts
// with.
const (
	prefixBehaviorSet = "bs."
	prefixFormation   = "fm."
	prefixRun         = "run."
	prefixLaunch      = "launch."
	prefixSchool      = "school."
	prefixAssignment  = "asg."
	prefixAudit       = "audit."
	switchKey         = "switch"
	prefixReport      = "report."
	prefixCheckpoint  = "ckpt."
	guardrailsKey     = "guardrails"
	prefixWebhook     = "hook."
	prefixTrigger     = "trigger."
	prefixTriggerSeen = "tseen."
)

// recordKind ties the KV records of one table to it: the key prefix (or the
// whole key, for a one-row table) and a new object to decode one into.
type recordKind struct {
	key   string
	exact bool // key is the whole key, not a prefix
	table string
	new   func() any
}

// records maps every persisted key to its table: Restore reads it, and a
// new table is added here and in schema.
var records = []recordKind{
	{prefixBehaviorSet, false, TableBehaviorSets, func() any { return &BehaviorSet{} }},
	{prefixFormation, false, TableFormations, func() any { return &Formation{} }},
	{prefixRun, false, TableRuns, func() any { return &Run{} }},
	{prefixLaunch, false, TableLaunches, func() any { return &Launch{} }},
	{prefixSchool, false, TableSchools, func() any { return &School{} }},
	{prefixAssignment, false, TableAssignments, func() any { return &Assignment{} }},
	{prefixAudit, false, TableAudit, func() any { return &AuditEntry{} }},
	{prefixReport, false, TableReports, func() any { return &Report{} }},
	{prefixCheckpoint, false, TableCheckpoints, func() any { return &Checkpoint{} }},
	{switchKey, true, TableSwitch, func() any { return &GlobalSwitch{} }},
	{guardrailsKey, true, TableGuardrails, func() any { return &Guardrails{} }},
	{prefixWebhook, false, TableWebhooks, func() any { return &Webhook{} }},
	{prefixTriggerSeen, false, TableTriggerSeen, func() any { return &TriggerSeen{} }},
	{prefixTrigger, false, TableTriggers, func() any { return &Trigger{} }},
}

// recordOf returns the record kind of a persisted key.
func recordOf(key string) (recordKind, bool) {
	for _, r := range records {
		if (r.exact && key == r.key) || (!r.exact && strings.HasPrefix(key, r.key)) {
			return r, true
		}
	}
	return recordKind{}, false
}

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
		checkpointsTable(), guardrailsTable(), webhooksTable(), triggersTable(), triggerSeenTable(),
	} {
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

func reportsTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableReports, Indexes: map[string]*memdb.IndexSchema{
		// id: a run's report (report API, scheduler finishing reports).
		indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Run"}},
	}}
}

func checkpointsTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableCheckpoints, Indexes: map[string]*memdb.IndexSchema{
		// id: a run's checkpoint (restore into the aggregator at Open,
		// the scheduler's checkpoint pass, deletion with the report).
		indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Run"}},
	}}
}

func guardrailsTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableGuardrails, Indexes: map[string]*memdb.IndexSchema{
		// id: the one global guardrails row (guardrails API, the guard
		// loop every second).
		indexID: {Name: indexID, Unique: true, Indexer: constIndex("global")},
	}}
}

func webhooksTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableWebhooks, Indexes: map[string]*memdb.IndexSchema{
		// id: a webhook by name (API get, put, delete; delivery workers
		// list them all at start).
		indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
	}}
}

func triggersTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableTriggers, Indexes: map[string]*memdb.IndexSchema{
		// id: a trigger by name (every trigger call; API).
		indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
	}}
}

func triggerSeenTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableTriggerSeen, Indexes: map[string]*memdb.IndexSchema{
		// id: the signatures one trigger accepted recently (every trigger
		// call checks and extends it).
		indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Trigger"}},
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
