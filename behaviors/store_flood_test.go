package behaviors

import (
	"fmt"
	"testing"
)

// A reply listing more messages than the store's bound in bytes holds at
// once: the store keeps the newest MaxMessagesPerChannel of them, as it
// does for a short list (a hostile or merely long history must not leave
// the koi reading its oldest messages as its latest).
func TestAddMessagesKeepsTheNewestOfAFlood(t *testing.T) {
	for _, shared := range []bool{false, true} {
		for _, order := range []string{"oldest first", "newest first"} {
			t.Run(fmt.Sprintf("shared %v, %s", shared, order), func(t *testing.T) {
				var w *Workspace
				if shared {
					w = NewWorkspace(0)
				}
				s := NewSharedStore(Identity{}, w)
				text := string(make([]byte, 100))
				n := int(MaxKnowledgeBytes/(messageOverhead+100)) * 2 // twice what fits
				msgs := make([]Message, n)
				for i := range msgs {
					j := i
					if order == "newest first" {
						j = n - 1 - i
					}
					msgs[i] = Message{TS: fmt.Sprintf("%d.000001", 1000+j), User: "U1", Text: text}
				}
				s.AddMessages("C1", msgs)
				got := s.Messages("C1")
				if len(got) != MaxMessagesPerChannel {
					t.Fatalf("kept %d messages, want %d", len(got), MaxMessagesPerChannel)
				}
				for i, m := range got {
					if want := fmt.Sprintf("%d.000001", 1000+n-MaxMessagesPerChannel+i); m.TS != want {
						t.Fatalf("message %d has ts %s, want %s (the newest %d of %d)", i, m.TS, want, MaxMessagesPerChannel, n)
					}
				}
				if want := int64(MaxMessagesPerChannel)*(messageOverhead+int64(len("1000.000001")+2+100)) + strSize("C1"); s.KnowledgeBytes() != want {
					t.Errorf("knowledge bytes %d, want %d", s.KnowledgeBytes(), want)
				}
			})
		}
	}
}
