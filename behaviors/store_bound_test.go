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
