package state

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/koipond/koipond/wire/wiretest"
)

// A school id of 2,100 characters became a hex key of 4,200 bytes: the
// PUB line overflowed the server's control line and the server closed the
// writer's connection for good. KV refuses such keys before they reach
// the wire, and the connection stays up; a store write with one changes
// nothing.
func TestKVRefusesOverlongKeys(t *testing.T) {
	ns := wiretest.StartNATS(t, wiretest.NATSConfig{}).Server
	defer ns.Shutdown()
	kv, nc := openKV(t, ns.ClientURL())
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, _ := New(kv)
	err := s.Write(ctx, func(tx *Txn) error {
		return tx.PutSchool(&School{ID: strings.Repeat("é", 1050), Capacity: 1})
	})
	if !errors.Is(err, ErrKeyTooLong) {
		t.Fatalf("write with a 4,200-byte key: %v", err)
	}
	if len(err.Error()) > 300 {
		t.Errorf("the error quotes %d bytes", len(err.Error()))
	}
	if s.Read().School(nil, strings.Repeat("é", 1050)) != nil {
		t.Error("the refused school is in memdb")
	}
	if err := kv.Delete(ctx, strings.Repeat("k", MaxKeyLen+1)); !errors.Is(err, ErrKeyTooLong) {
		t.Errorf("delete with a long key: %v", err)
	}
	if err := nc.Flush(); err != nil || !nc.IsConnected() {
		t.Fatalf("connection after the refused keys: %v (status %v)", err, nc.Status())
	}
	if err := kv.Put(ctx, strings.Repeat("k", MaxKeyLen), []byte("1")); err != nil {
		t.Errorf("a key of exactly MaxKeyLen: %v", err)
	}
}

// Rebind moves a KV onto a new connection: writes work after the old one
// is closed.
func TestKVRebind(t *testing.T) {
	ns := wiretest.StartNATS(t, wiretest.NATSConfig{}).Server
	defer ns.Shutdown()
	kv, nc := openKV(t, ns.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc.Close()
	if err := kv.Put(ctx, "a", []byte("1")); err == nil {
		t.Fatal("put on a closed connection succeeded")
	}
	nc2, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js, _ := jetstream.New(nc2)
	if err := kv.Rebind(ctx, js, "koipond_test", 1); err != nil {
		t.Fatal(err)
	}
	if err := kv.Put(ctx, "a", []byte("1")); err != nil {
		t.Fatalf("put after rebind: %v", err)
	}
	recs, err := kv.Load(ctx)
	if err != nil || string(recs["a"]) != "1" {
		t.Errorf("load after rebind: %v %v", recs, err)
	}
}
