package behaviors

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// storeOps drives a store with a random but seeded mix of what templates
// do: channels (some updated), messages (some repeated), user ids.
func storeOps(s *Store, seed uint64, n int) {
	r := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i < n; i++ {
		switch r.IntN(4) {
		case 0:
			j := r.IntN(300)
			s.AddChannel(Channel{ID: fmt.Sprintf("C%03d", j), Name: fmt.Sprintf("chan-%d", j), IsMember: r.IntN(2) == 0,
				IsArchived: j%17 == 0, NumMembers: r.IntN(3)})
		case 1:
			ch := fmt.Sprintf("C%03d", r.IntN(40))
			var msgs []Message
			for k := r.IntN(50); k > 0; k-- {
				ts := fmt.Sprintf("17000%05d.%06d", r.IntN(100), r.IntN(10))
				msgs = append(msgs, Message{TS: ts, User: fmt.Sprintf("U%d", r.IntN(900)), Text: "t" + ts[len(ts)-3:]})
			}
			s.AddMessages(ch, msgs)
		case 2:
			ids := make([]string, r.IntN(60))
			for k := range ids {
				ids[k] = fmt.Sprintf("U%d", r.IntN(900))
			}
			s.AddUserIDs(ids)
		case 3:
			s.SetCurrent(fmt.Sprintf("C%03d", r.IntN(300)))
		}
	}
}

// storeView is everything a template can read of a store's knowledge.
func storeView(s *Store) map[string]any {
	v := map[string]any{"channels": s.Channels(), "users": s.UserIDs(), "current": s.Current()}
	for i := 0; i < 300; i++ {
		id := fmt.Sprintf("C%03d", i)
		v["msgs:"+id] = s.Messages(id)
		v["latest:"+id] = s.LatestMessage(id)
		v["chan:"+id] = s.Channel(id)
	}
	return v
}

// A shared store shows templates exactly what a private one shows, even
// when the workspace is small enough to start afresh many times.
func TestSharedStoreSeesWhatAPrivateOneSees(t *testing.T) {
	for _, limit := range []int64{0, 4 << 10} { // the default, and one that resets all the time
		w := NewWorkspace(limit)
		for seed := uint64(1); seed <= 3; seed++ {
			private := NewStore(Identity{})
			shared := NewSharedStore(Identity{}, w)
			storeOps(private, seed, 800)
			storeOps(shared, seed, 800)
			if p, s := storeView(private), storeView(shared); !reflect.DeepEqual(p, s) {
				for k := range p {
					if !reflect.DeepEqual(p[k], s[k]) {
						t.Fatalf("limit %d, seed %d: %s differs:\nprivate %v\nshared  %v", limit, seed, k, p[k], s[k])
					}
				}
			}
			if pb, sb := private.KnowledgeBytes(), shared.KnowledgeBytes(); pb != sb {
				t.Errorf("limit %d, seed %d: knowledge %d bytes private, %d shared", limit, seed, pb, sb)
			}
		}
		st := w.Stats()
		if st.Bytes > st.Limit {
			t.Errorf("limit %d: the workspace holds %d bytes", limit, st.Bytes)
		}
		if limit > 0 && st.Resets == 0 {
			t.Errorf("a %d-byte workspace never started afresh: %+v", limit, st)
		}
	}
}

// Koi that learn the same channels and messages hold the same records.
func TestSharedStoresShareRecords(t *testing.T) {
	w := NewWorkspace(0)
	a, b := NewSharedStore(Identity{Index: 1}, w), NewSharedStore(Identity{Index: 2}, w)
	for _, s := range []*Store{a, b} {
		s.AddChannel(Channel{ID: "C1", Name: "general", IsMember: s == a, NumMembers: 3})
		s.AddMessages(strings.Clone("C1"), []Message{{TS: strings.Clone("1.000001"), User: strings.Clone("U1"), Text: strings.Clone("hello")}})
		s.AddUserIDs([]string{strings.Clone("U1")})
	}
	if a.channels[0].info != b.channels[0].info {
		t.Error("the channel record is not shared")
	}
	if a.channels[0].member == b.channels[0].member {
		t.Error("membership is shared: it is each koi's own")
	}
	if a.messages["C1"][0] != b.messages["C1"][0] {
		t.Error("the message record is not shared")
	}
	if ca, cb := a.Channel("C1"), b.Channel("C1"); !ca.IsMember || cb.IsMember || ca.Name != cb.Name {
		t.Errorf("channels seen: %+v, %+v", ca, cb)
	}
	if st := w.Stats(); st.Channels != 1 || st.Messages != 1 {
		t.Errorf("workspace: %+v, want one channel and one message", st)
	}
}

// A target that answers with huge or ever-new values cannot grow a koi's
// knowledge past MaxKnowledgeBytes, nor the workspace past its limit.
func TestKnowledgeBoundedInBytes(t *testing.T) {
	w := NewWorkspace(1 << 20)
	s := NewSharedStore(Identity{}, w)
	big := strings.Repeat("x", 100<<10)
	for i := 0; i < 200; i++ {
		ch := fmt.Sprintf("C%d", i)
		s.AddChannel(Channel{ID: ch, Name: big})
		s.AddMessages(ch, []Message{{TS: fmt.Sprintf("%d.1", i), User: "U1", Text: big}, {TS: fmt.Sprintf("%d.2", i), Text: fmt.Sprint(i)}})
		s.AddUserIDs([]string{fmt.Sprintf("U%d-%s", i, big[:1000])})
		if n := s.KnowledgeBytes(); n > MaxKnowledgeBytes || n < 0 {
			t.Fatalf("after %d rounds the store knows %d bytes (bound %d)", i, n, MaxKnowledgeBytes)
		}
	}
	if st := w.Stats(); st.Bytes > st.Limit {
		t.Fatalf("workspace: %+v", st)
	}
	// What came first is kept: the bound refuses what does not fit.
	if got := s.LatestMessage("C0"); got == nil || got.Text != "0" {
		t.Errorf("latest message of C0 = %+v, want the small one", got)
	}
	if len(s.UserIDs()) == 0 {
		t.Error("no user id kept")
	}
}

// Koi of a run learn at the same time: stores sharing one workspace (small
// enough to start afresh while they work) each end up with what they were
// told, as a private store would.
func TestSharedStoresConcurrently(t *testing.T) {
	w := NewWorkspace(8 << 10)
	const n = 8
	shared := make([]*Store, n)
	done := make(chan struct{})
	for i := range shared {
		shared[i] = NewSharedStore(Identity{Index: i}, w)
		go func() {
			defer func() { done <- struct{}{} }()
			storeOps(shared[i], uint64(i%2+1), 400)
		}()
	}
	for range shared {
		<-done
	}
	for i, s := range shared {
		private := NewStore(Identity{})
		storeOps(private, uint64(i%2+1), 400)
		if !reflect.DeepEqual(storeView(private), storeView(s)) {
			t.Errorf("store %d differs from a private one told the same", i)
		}
	}
	if st := w.Stats(); st.Bytes > st.Limit || st.Resets == 0 {
		t.Errorf("workspace %+v: want resets and at most its limit", st)
	}
}
