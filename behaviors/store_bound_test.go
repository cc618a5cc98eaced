package behaviors

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// A target that names a huge, ever-new channel in each event (the id an
// on_event handler's addMessages files the message under) must not grow
// a koi past its bound: the channel ids its messages are kept under count
// toward MaxKnowledgeBytes like the messages themselves.
func TestMessageChannelIDsCountTowardTheBound(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	w := NewWorkspace(4 << 10) // too small: the ids land in the store's own table
	s := NewSharedStore(Identity{}, w)
	pad := strings.Repeat("c", 64<<10)
	for i := range MaxChannels {
		s.AddMessages(fmt.Sprintf("C%d-%s", i, pad), []Message{{TS: fmt.Sprintf("%d.1", i), User: "U1", Text: "hi"}})
		if kb := s.KnowledgeBytes(); kb > MaxKnowledgeBytes {
			t.Fatalf("after %d channels the store knows %d bytes, over its bound %d", i+1, kb, MaxKnowledgeBytes)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 2*MaxKnowledgeBytes {
		t.Errorf("%d messages under %d KiB channel ids grew the heap by %d bytes, over twice the store's bound (%d); it counts %d",
			MaxChannels, len(pad)>>10, grown, MaxKnowledgeBytes, s.KnowledgeBytes())
	}
	t.Logf("heap grew %d bytes", int64(after.HeapAlloc)-int64(before.HeapAlloc))
	if got := s.LatestMessage(fmt.Sprintf("C0-%s", pad)); got == nil || got.Text != "hi" {
		t.Errorf("the first channel's message is lost: %+v", got)
	}
	runtime.KeepAlive(s)
}

// A store that has met usersWholeAt users gets its whole ring at once and
// never reallocates it; one that knows few keeps a small one.
func TestUserRingTakesItsWholeSizeOnceTheKoiKnowsMany(t *testing.T) {
	s := NewSharedStore(Identity{}, NewWorkspace(0))
	ids := func(from, to int) []string {
		var out []string
		for i := from; i < to; i++ {
			out = append(out, fmt.Sprintf("U%06d", i))
		}
		return out
	}
	s.AddUserIDs(ids(0, usersWholeAt-1))
	if c := cap(s.k.users); c >= MaxUserIDs/2 {
		t.Fatalf("a store knowing %d users holds a ring of %d", usersWholeAt-1, c)
	}
	s.AddUserIDs(ids(usersWholeAt-1, usersWholeAt+1))
	if c := cap(s.k.users); c != MaxUserIDs {
		t.Fatalf("a store knowing %d users holds a ring of %d, want %d", usersWholeAt+1, c, MaxUserIDs)
	}
	ring := &s.k.users[0]
	for i := usersWholeAt + 1; i < 3*MaxUserIDs; i += 7 {
		s.AddUserIDs(ids(i, i+7))
	}
	if got := len(s.UserIDs()); got != MaxUserIDs {
		t.Fatalf("the store keeps %d ids, want %d", got, MaxUserIDs)
	}
	if &s.k.users[0] != ring || cap(s.k.users) != MaxUserIDs {
		t.Fatalf("the ring was reallocated after it took its whole size (cap %d)", cap(s.k.users))
	}
}
