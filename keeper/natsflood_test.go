package keeper

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/wire"
)

// largestPoll is a poll as large as the wire bounds allow (about 4.7 MB):
// a thousand runs and a thousand launches, each with a long text.
func largestPoll(id string) *wire.PollRequest {
	req := &wire.PollRequest{School: id, Software: "liar", Clock: time.Now()}
	text := strings.Repeat("x", wire.MaxText)
	for i := range wire.MaxRunsPerMessage {
		req.Runs = append(req.Runs, wire.RunStatus{Run: fmt.Sprintf("r%0120d", i), Pressure: text, PressureAt: time.Now()})
	}
	for i := range wire.MaxLaunchesPerMessage {
		req.Launches = append(req.Launches, wire.LaunchStatus{Launch: fmt.Sprintf("l%0120d", i), Error: text})
	}
	return req
}

// A flood of the largest polls, sent without waiting for replies, queues
// no more than the poll subject's pending limit in the keeper (it
// queued 400 MB for 100 of them): NATS drops the rest as a slow
// consumer, and an honest school is answered once the flood has passed.
func TestPollFloodQueuesABoundedBacklog(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	seedRun(t, k, 10)
	honest := newFakeSchool(t, k, "honest", 100)
	honest.poll()
	liar := schoolConn(t, k)
	defer liar.Close()
	data, err := wire.Encode(largestPoll("liar"))
	if err != nil {
		t.Fatal(err)
	}
	before := heapInUse()
	var peak int64
	const n = 100
	for range n {
		if err := liar.PublishRequest(wire.SubjectPoll, wire.SchoolInboxPrefix+".void", data); err != nil {
			t.Fatal(err)
		}
	}
	if err := liar.Flush(); err != nil {
		t.Fatal(err)
	}
	// Sample the heap while the keeper works through what it kept.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		peak = max(peak, heapInUse())
		if k.stats.rejections()["nats: slow consumer"] > 0 && k.stats.rejections()[wire.SubjectPoll+": reply failed"] == 0 {
			if _, err := honest.nc.Request(wire.SubjectPoll, data[:0], time.Second); err == nil {
				break // answered (an empty poll gets an error reply): the backlog is gone
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s: rejections %v", k.stats.rejections())
		}
	}
	grew := peak - before
	t.Logf("%d polls of %d bytes published: keeper heap grew %d MiB at most; %d slow-consumer events", n, len(data), grew>>20, k.stats.rejections()["nats: slow consumer"])
	// What this process may hold: the keeper's 16 MiB of pending polls;
	// the embedded NATS server's queue to the keeper's connection (its
	// max_pending, 64 MiB by default); the poll the keeper decodes (a few
	// times its size) and the test's own copy. 100 polls are 457 MB.
	if limit := int64(16<<20 + 64<<20 + 8*len(data)); grew > limit {
		t.Errorf("the heap grew %d MiB, more than %d MiB", grew>>20, limit>>20)
	}
	if r := honest.poll(); r.Error != "" {
		t.Errorf("honest poll after the flood: %s", r.Error)
	}
}

// Blob replies that carry files are encoded once and kept, within a bound;
// a reply without them (nothing stored under that hash yet) is not kept.
func TestBlobRepliesAreKeptEncoded(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	set, err := k.PutBehaviorSet(context.Background(), "test", "bg", []behaviors.File{{Name: "bg.json", Data: []byte(bgSet)}})
	if err != nil {
		t.Fatal(err)
	}
	nc := schoolConn(t, k)
	defer nc.Close()
	fetch := func(hash string) []byte {
		req, err := wire.Encode(&wire.BlobRequest{Kind: wire.BlobBehaviorSet, Hash: hash})
		if err != nil {
			t.Fatal(err)
		}
		m, err := nc.Request(wire.SubjectBlob, req, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return m.Data
	}
	first, second := fetch(set.Hash), fetch(set.Hash)
	if string(first) != string(second) || k.blobs.get(string(wire.BlobBehaviorSet)+" "+set.Hash) == nil {
		t.Errorf("the set's reply was not kept, or changed: %d and %d bytes", len(first), len(second))
	}
	fetch("0123456789abcdef")
	if k.blobs.get(string(wire.BlobBehaviorSet)+" 0123456789abcdef") != nil {
		t.Error("a reply saying nothing is stored was kept")
	}
	var c blobCache
	for i := range 100 {
		c.put(fmt.Sprint(i), make([]byte, 1<<20))
	}
	if c.bytes > maxBlobCache || len(c.m) != maxBlobCache>>20 {
		t.Errorf("after 100 MiB of replies the cache holds %d bytes in %d entries, want at most %d", c.bytes, len(c.m), maxBlobCache)
	}
}
