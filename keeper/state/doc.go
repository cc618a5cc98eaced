// Package state is the keeper's store: a go-memdb database (the indexed,
// in-memory view every reader uses) in front of a durable Persister (a
// JetStream KV bucket in production).
//
// It is the only package that touches memdb. Tables and indexes are named
// by the constants in schema.go, each index with a comment naming the query
// it serves. Reads take a memdb.WatchSet (nil when the caller does not
// block) so live views can wait for a change; objects returned are shared
// with the database and must not be modified: copy, change, write.
//
// Writes follow one pattern (Store.Write): open a write transaction, let the
// caller change objects through Txn, persist every changed record to the
// Persister, and only then commit to memdb and acknowledge. If persisting
// fails, the memdb transaction is aborted and the records already written
// are put back to their previous values (best effort), so nothing is
// half-applied. At start, Restore rebuilds memdb from the persisted records
// in one transaction, each record going to its table by its key prefix
// (the records list in schema.go).
//
// The package starts no goroutine: a Store is used by its callers'
// goroutines and guards itself.
//
// Lock order: the Store's write lock (held for a whole Write; a WriteFirst
// takes it before any ordinary Write waiting) before the memdb writer
// lock; no other locks are held across a Persister call.
package state
