package behaviors

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
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
// when the workspace is far too small for what its stores learn.
func TestSharedStoreSeesWhatAPrivateOneSees(t *testing.T) {
	for _, limit := range []int64{0, 4 << 10} { // the default, and one that refuses most values
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
		if limit > 0 && st.Refused == 0 {
			t.Errorf("a %d-byte workspace never refused a value: %+v", limit, st)
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
	if ha, hb := a.k.chans[0], b.k.chans[0]; ha != hb || ha&ownBit != 0 {
		t.Errorf("the channel record is not shared: handles %#x, %#x", ha, hb)
	}
	if a.k.isMember(0) == b.k.isMember(0) {
		t.Error("membership is shared: it is each koi's own")
	}
	if ha, hb := a.k.msgs[0].ms[0], b.k.msgs[0].ms[0]; ha != hb || ha&ownBit != 0 {
		t.Errorf("the message record is not shared: handles %#x, %#x", ha, hb)
	}
	if ha, hb := a.k.users[0], b.k.users[0]; ha != hb || ha&ownBit != 0 {
		t.Errorf("the user id is not shared: handles %#x, %#x", ha, hb)
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

// Koi of a run learn at the same time: stores sharing one workspace (too
// small for what they learn) each end up with what they were told, as a
// private store would.
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
	if st := w.Stats(); st.Bytes > st.Limit || st.Refused == 0 {
		t.Errorf("workspace %+v: want refusals and at most its limit", st)
	}
}

// The workspace holds what the koi know now: a value every store has
// forgotten is freed, and so is everything a collected store held.
func TestWorkspaceLetsGoOfWhatNoStoreHolds(t *testing.T) {
	w := NewWorkspace(0)
	s := NewSharedStore(Identity{}, w)
	var first []string
	for i := 0; i < MaxUserIDs; i++ {
		first = append(first, fmt.Sprintf("U%d", i))
	}
	s.AddUserIDs(first)
	if st := w.Stats(); st.Strings != MaxUserIDs {
		t.Fatalf("after %d ids the workspace holds %+v", MaxUserIDs, st)
	}
	// As many new ids replace every old one: the old entries go.
	var second []string
	for i := 0; i < MaxUserIDs; i++ {
		second = append(second, fmt.Sprintf("V%d", i))
	}
	s.AddUserIDs(second)
	var want int64
	for _, id := range second {
		want += strSize(id)
	}
	if st := w.Stats(); st.Strings != MaxUserIDs || st.Bytes != want {
		t.Fatalf("after replacing every id the workspace holds %+v, want %d strings, %d bytes", st, MaxUserIDs, want)
	}
	storeOps(s, 7, 400)
	runtime.KeepAlive(s)
	s = nil
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		st := w.Stats()
		if st.Bytes == 0 && st.Strings == 0 && st.Channels == 0 && st.Messages == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store was collected long ago but the workspace still holds %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A hostile target that floods every koi with ever-new user ids fills the
// run's workspace to its limit and no further; each koi keeps at most its
// own bound, so the school's heap grows by no more than those bounds.
func TestUserIDFloodHitsTheBounds(t *testing.T) {
	const (
		stores = 64
		rounds = 20
		limit  = 256 << 10
	)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	w := NewWorkspace(limit)
	ss := make([]*Store, stores)
	pad := strings.Repeat("x", 64)
	for i := range ss {
		ss[i] = NewSharedStore(Identity{Index: i}, w)
	}
	n := 0
	for r := 0; r < rounds; r++ {
		for _, s := range ss {
			ids := make([]string, 100)
			for j := range ids {
				n++
				ids[j] = fmt.Sprintf("U%09d-%s", n, pad)
			}
			s.AddUserIDs(ids)
			if kb := s.KnowledgeBytes(); kb > MaxKnowledgeBytes {
				t.Fatalf("a store knows %d bytes, over its bound %d", kb, MaxKnowledgeBytes)
			}
		}
		if st := w.Stats(); st.Bytes > limit {
			t.Fatalf("round %d: the workspace holds %d bytes, over its limit %d", r, st.Bytes, limit)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := w.Stats()
	if st.Refused == 0 {
		t.Errorf("%d distinct ids never reached the workspace's limit: %+v", n, st)
	}
	// Each store keeps its newest MaxUserIDs ids, whatever table holds them.
	perStore := int64(MaxUserIDs) * strSize(fmt.Sprintf("U%09d-%s", 1, pad))
	for i, s := range ss {
		if got := len(s.UserIDs()); got != MaxUserIDs {
			t.Fatalf("store %d keeps %d ids, want %d", i, got, MaxUserIDs)
		}
		if kb := s.KnowledgeBytes(); kb != perStore {
			t.Fatalf("store %d knows %d bytes, want %d", i, kb, perStore)
		}
	}
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if bound := stores*perStore*2 + limit*2; grown > bound {
		t.Errorf("%d distinct ids grew the heap by %d bytes, more than twice the stores' and the workspace's bounds (%d)", n, grown, bound)
	}
	runtime.KeepAlive(ss)
}

// Entries live in segments of 16, 32, 64, … slots: every index has one
// slot of its own, and the last index a handle can name still has one.
func TestTableSegments(t *testing.T) {
	next := 0
	lastSeg := 0
	for i := uint32(0); i < 1<<17; i++ {
		seg, off := segment(i)
		if seg != lastSeg {
			if off != 0 || seg != lastSeg+1 || next != segmentBase<<lastSeg {
				t.Fatalf("index %d: segment %d offset %d after segment %d held %d", i, seg, off, lastSeg, next)
			}
			lastSeg, next = seg, 0
		}
		if off != next || off >= segmentBase<<seg {
			t.Fatalf("index %d: segment %d offset %d, want offset %d", i, seg, off, next)
		}
		next++
	}
	if seg, off := segment(maxEntries - 1); seg >= maxSegments || off >= segmentBase<<seg {
		t.Fatalf("the last index lands at segment %d offset %d", seg, off)
	}
}
