package state

import (
	"context"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/koipond/koipond/wire/wiretest"
)

const testBucket = "koipond_test"

// gensEnv is an embedded server, a connection to it and its state bucket.
type gensEnv struct {
	dir  string
	url  string
	nc   *nats.Conn
	js   jetstream.JetStream
	main jetstream.KeyValue
	ctx  context.Context
}

func newGensEnv(t *testing.T) *gensEnv {
	t.Helper()
	dir := t.TempDir()
	ns := wiretest.StartNATS(t, wiretest.NATSConfig{StoreDir: dir}).Server
	t.Cleanup(ns.Shutdown)
	nc, js := dial(t, ns.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	kv, err := OpenKV(ctx, js, testBucket, 1)
	if err != nil {
		t.Fatal(err)
	}
	return &gensEnv{dir: dir, url: ns.ClientURL(), nc: nc, js: js, main: kv.handle(), ctx: ctx}
}

// dial connects to the server at url, for the test's life.
func dial(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// open opens the state bucket with its checkpoint generations, as the
// keeper does.
func (e *gensEnv) open(t *testing.T) *KV {
	t.Helper()
	kv, err := OpenKV(e.ctx, e.js, testBucket, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.OpenCheckpoints(e.ctx, e.js, testBucket, 1); err != nil {
		t.Fatal(err)
	}
	return kv
}

// gens returns the numbers of the checkpoint buckets that exist.
func (e *gensEnv) gens(t *testing.T) []uint64 {
	t.Helper()
	var out []uint64
	l := e.js.KeyValueStoreNames(e.ctx)
	for name := range l.Name() {
		if n, ok := parseGen(testBucket, name); ok {
			out = append(out, n)
		}
	}
	if err := l.Error(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// bucket creates (or opens) a bucket and applies ops to it: "key=value"
// puts, "-key" deletes.
func (e *gensEnv) bucket(t *testing.T, name string, ops ...string) {
	t.Helper()
	kv, err := e.js.CreateOrUpdateKeyValue(e.ctx, jetstream.KeyValueConfig{Bucket: name, History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if key, ok := strings.CutPrefix(op, "-"); ok {
			if err := kv.Delete(e.ctx, key); err != nil {
				t.Fatal(err)
			}
			continue
		}
		key, val, _ := strings.Cut(op, "=")
		if _, err := kv.Put(e.ctx, key, []byte(val)); err != nil {
			t.Fatal(err)
		}
	}
}

// live returns the live records of a bucket whose keys start with prefix.
func (e *gensEnv) live(t *testing.T, name, prefix string) map[string]string {
	t.Helper()
	kv, err := e.js.KeyValue(e.ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	err = eachLatest(e.ctx, kv, jetstream.AllKeys, func(en jetstream.KeyValueEntry) error {
		if en.Operation() == jetstream.KeyValuePut && strings.HasPrefix(en.Key(), prefix) {
			out[en.Key()] = string(en.Value())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func loadStrings(t *testing.T, ctx context.Context, kv *KV) map[string]string {
	t.Helper()
	recs, err := kv.LoadAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range recs {
		out[k] = string(v)
	}
	return out
}

// Checkpoint records go to their own bucket, the rest to the state
// bucket; a roll moves the live checkpoints to a new bucket, drops the
// deleted ones and deletes the old bucket.
func TestCheckpointGensRollKeepsTheLiveRecords(t *testing.T) {
	e := newGensEnv(t)
	kv := e.open(t)
	if g := e.gens(t); !slices.Equal(g, []uint64{1}) {
		t.Fatalf("generations after the first open: %v, want [1]", g)
	}
	want := map[string]string{}
	for _, k := range []string{"a", "b", "c", "d"} {
		if err := kv.Put(e.ctx, "ckpt."+k, []byte("v-"+k)); err != nil {
			t.Fatal(err)
		}
		want["ckpt."+k] = "v-" + k
	}
	if err := kv.Put(e.ctx, "run.x", []byte("run")); err != nil {
		t.Fatal(err)
	}
	want["run.x"] = "run"
	if err := kv.Delete(e.ctx, "ckpt.b"); err != nil {
		t.Fatal(err)
	}
	delete(want, "ckpt.b")
	for range 4 { // written passes twice the live records: due past rollBytes
		if err := kv.Put(e.ctx, "ckpt.a", []byte("v-a")); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.live(t, testBucket, ""); !maps.Equal(got, map[string]string{"run.x": "run"}) {
		t.Errorf("the state bucket holds %v, want only run.x", got)
	}
	if err := kv.RollCheckpoints(e.ctx); err != nil {
		t.Fatal(err)
	}
	if g := e.gens(t); !slices.Equal(g, []uint64{1}) {
		t.Fatalf("rolled before taking rollBytes: %v", g)
	}
	kv.checkpoints().rollBytes = 1
	if err := kv.RollCheckpoints(e.ctx); err != nil {
		t.Fatal(err)
	}
	if g := e.gens(t); !slices.Equal(g, []uint64{2}) {
		t.Fatalf("generations after a roll: %v, want [2]", g)
	}
	if got := loadStrings(t, e.ctx, kv); !maps.Equal(got, want) {
		t.Errorf("after the roll, load: %v, want %v", got, want)
	}
	if got := e.live(t, genName(testBucket, 2), ""); len(got) != 3 {
		t.Errorf("generation 2 holds %v, want the 3 live checkpoints", got)
	}
	// A reopened keeper finds the same.
	if got := loadStrings(t, e.ctx, e.open(t)); !maps.Equal(got, want) {
		t.Errorf("after reopening, load: %v, want %v", got, want)
	}
}

// A keeper can crash at any step of a roll (or before generations, with
// its checkpoints in the state bucket). Opening finishes the roll: every
// live checkpoint comes from the youngest bucket that knows its key, a
// checkpoint deleted there stays deleted, and only the new generation is
// left.
func TestCheckpointGensOpenFinishesARollCutShort(t *testing.T) {
	cases := []struct {
		name  string
		state []string   // ops on the state bucket
		gens  [][]string // ops on generations 1, 2, ...
		want  map[string]string
	}{
		{
			name:  "checkpoints of a keeper before generations",
			state: []string{"run.r=r", "ckpt.a=a0", "ckpt.b=b0", "ckpt.c=c0", "-ckpt.c"},
			want:  map[string]string{"ckpt.a": "a0", "ckpt.b": "b0"},
		},
		{
			name: "crashed after creating the next generation",
			gens: [][]string{{"ckpt.a=a1", "ckpt.b=b1", "ckpt.c=c1", "-ckpt.c"}, {}},
			want: map[string]string{"ckpt.a": "a1", "ckpt.b": "b1"},
		},
		{
			name: "crashed mid-copy, with puts and deletes since",
			gens: [][]string{
				{"ckpt.a=a1", "ckpt.b=b1", "ckpt.c=c1", "ckpt.d=d1"},
				{"ckpt.a=a2", "-ckpt.c", "ckpt.e=e2", "-ckpt.e"},
			},
			want: map[string]string{"ckpt.a": "a2", "ckpt.b": "b1", "ckpt.d": "d1"},
		},
		{
			name: "crashed after the copy, before deleting",
			gens: [][]string{
				{"ckpt.a=a1", "ckpt.b=b1"},
				{"ckpt.a=a1", "ckpt.b=b2"},
			},
			want: map[string]string{"ckpt.a": "a1", "ckpt.b": "b2"},
		},
		{
			name:  "everything at once: the state bucket, two generations",
			state: []string{"ckpt.a=a0", "ckpt.z=z0", "ckpt.y=y0", "run.r=r"},
			gens: [][]string{
				{"ckpt.a=a1", "ckpt.z=z1", "ckpt.x=x1"},
				{"-ckpt.z", "ckpt.w=w2"},
			},
			want: map[string]string{"ckpt.a": "a1", "ckpt.y": "y0", "ckpt.x": "x1", "ckpt.w": "w2"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newGensEnv(t)
			e.bucket(t, testBucket, c.state...)
			for i, ops := range c.gens {
				e.bucket(t, genName(testBucket, uint64(i+1)), ops...)
			}
			kv := e.open(t)
			want := maps.Clone(c.want)
			for _, op := range c.state {
				if k, v, ok := strings.Cut(op, "="); ok && !strings.HasPrefix(k, prefixCheckpoint) {
					want[k] = v
				}
			}
			if got := loadStrings(t, e.ctx, kv); !maps.Equal(got, want) {
				t.Errorf("load: %v, want %v", got, want)
			}
			if g, w := e.gens(t), []uint64{uint64(len(c.gens) + 1)}; !slices.Equal(g, w) {
				t.Errorf("generations: %v, want %v", g, w)
			}
			if got := e.live(t, testBucket, prefixCheckpoint); len(got) != 0 {
				t.Errorf("the state bucket still holds checkpoints %v", got)
			}
		})
	}
}

// Puts and deletes run beside rolls (the store writes while the
// scheduler rolls). Each round writes 150 records, then rolls while it
// puts or deletes each of them once more, in a shuffled order: a write
// that lands in the new generation before the copy reaches its key must
// win over the copy, and a delete must not come back. After each round,
// and after reopening, the records loaded are the last of each key's
// writes.
func TestCheckpointGensWritesBesideRolls(t *testing.T) {
	e := newGensEnv(t)
	kv := e.open(t)
	g := kv.checkpoints()
	g.rollBytes = 1
	const keys = 150
	want := map[string]string{}
	rng := rand.New(rand.NewPCG(1, 2))
	put := func(key, val string) {
		t.Helper()
		if err := kv.Put(e.ctx, key, []byte(val)); err != nil {
			t.Fatal(err)
		}
		want[key] = val
	}
	// Rounds go on until enough writes have landed mid-copy, however
	// fast the roll or the writes go on this machine; bounded.
	const wantDuring, maxRounds = 100, 40
	during, round := 0, 0
	for ; during < wantDuring && round < maxRounds; round++ {
		for i := range keys {
			put(fmt.Sprintf("ckpt.run%d", i), fmt.Sprintf("r%d-first", round))
		}
		rolled := make(chan error, 1)
		go func() { rolled <- kv.RollCheckpoints(e.ctx) }()
		for _, i := range rng.Perm(keys) {
			key := fmt.Sprintf("ckpt.run%d", i)
			if rng.IntN(3) == 0 {
				if err := kv.Delete(e.ctx, key); err != nil {
					t.Fatal(err)
				}
				delete(want, key)
			} else {
				put(key, fmt.Sprintf("r%d-second-%s", round, strings.Repeat("x", rng.IntN(300))))
			}
			g.mu.Lock()
			if g.prev != nil {
				during++
			}
			g.mu.Unlock()
		}
		if err := <-rolled; err != nil {
			t.Fatal(err)
		}
		if got := loadStrings(t, e.ctx, kv); !maps.Equal(got, want) {
			t.Fatalf("round %d: load differs from the writes (%d of each: got, want)\n%v\n%v", round, len(got), got, want)
		}
	}
	if during < wantDuring {
		t.Fatalf("only %d writes landed mid-copy in %d rounds", during, round)
	}
	t.Logf("%d rounds, %d writes mid-copy", round, during)
	if got := loadStrings(t, e.ctx, e.open(t)); !maps.Equal(got, want) {
		t.Errorf("after reopening, load differs from the writes:\n got %v\nwant %v", got, want)
	}
	if g := e.gens(t); len(g) != 1 {
		t.Errorf("generations left: %v, want one", g)
	}
}

// blockBytes returns the size of the file blocks of a bucket's stream.
func (e *gensEnv) blockBytes(t *testing.T, bucket string) int64 {
	t.Helper()
	var n int64
	dir := filepath.Join(e.dir, "jetstream", "$G", "streams", "KV_"+bucket, "msgs")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range ents {
		if filepath.Ext(en.Name()) == ".blk" {
			fi, err := en.Info()
			if err != nil {
				t.Fatal(err)
			}
			n += fi.Size()
		}
	}
	return n
}

// What the generations are for: a busy run's checkpoint, rewritten
// again and again as the scheduler does (a roll attempt after each),
// never makes its bucket's blocks outgrow nats-server's smallest reload
// buffer (256 KiB). The same writes to one bucket pass 1 MiB.
func TestCheckpointGensKeepBlocksSmall(t *testing.T) {
	e := newGensEnv(t)
	kv := e.open(t)
	val := make([]byte, 27000)
	const writes = 45
	var most int64
	for i := range writes {
		val[0] = byte(i)
		if err := kv.Put(e.ctx, "ckpt.busy", val); err != nil {
			t.Fatal(err)
		}
		if err := kv.RollCheckpoints(e.ctx); err != nil {
			t.Fatal(err)
		}
		g := e.gens(t)
		if len(g) != 1 {
			t.Fatalf("write %d: generations %v", i, g)
		}
		most = max(most, e.blockBytes(t, genName(testBucket, g[0])))
		if _, err := e.main.Put(e.ctx, "ckpt.busy", val); err != nil {
			t.Fatal(err)
		}
	}
	if most > 256<<10 {
		t.Errorf("a generation's blocks reached %d bytes, over 256 KiB", most)
	}
	if one := e.blockBytes(t, testBucket); one < 1<<20 {
		t.Errorf("the same writes to one bucket left %d bytes of blocks: the comparison shows nothing", one)
	}
	t.Logf("%d writes of 27,000 bytes: the largest generation %d bytes of blocks; one bucket %d", writes, most, e.blockBytes(t, testBucket))
}

// What lands in a checkpoint bucket from elsewhere is not the state's: a
// record that is not a checkpoint is neither loaded nor carried over, and
// a bucket numbered as high as a number goes stops the open with an
// error that names it rather than wrapping to generation 0.
func TestCheckpointGensIgnoreWhatIsNotTheirs(t *testing.T) {
	e := newGensEnv(t)
	e.bucket(t, testBucket, "switch=mine")
	e.bucket(t, genName(testBucket, 4), "switch=planted", "ckpt.a=a")
	kv := e.open(t)
	if got := loadStrings(t, e.ctx, kv); !maps.Equal(got, map[string]string{"switch": "mine", "ckpt.a": "a"}) {
		t.Errorf("load: %v", got)
	}
	if got := e.live(t, genName(testBucket, 5), ""); !maps.Equal(got, map[string]string{"ckpt.a": "a"}) {
		t.Errorf("the rolled bucket holds %v", got)
	}
	e.bucket(t, genName(testBucket, math.MaxUint64))
	k2, err := OpenKV(e.ctx, e.js, testBucket, 1)
	if err != nil {
		t.Fatal(err)
	}
	err = k2.OpenCheckpoints(e.ctx, e.js, testBucket, 1)
	if err == nil || !strings.Contains(err.Error(), genName(testBucket, math.MaxUint64)) {
		t.Errorf("open beside a bucket numbered %d: %v", uint64(math.MaxUint64), err)
	}
}

func TestValidBucket(t *testing.T) {
	for _, ok := range []string{"koipond", "a", "team-1_state", strings.Repeat("b", 200)} {
		if err := ValidBucket(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a.b", "a b", "ä", strings.Repeat("b", 201), "koipond_ckpt_3", "x_ckpt_"} {
		if err := ValidBucket(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseGen(t *testing.T) {
	for name, want := range map[string]uint64{"kp_ckpt_1": 1, "kp_ckpt_18446744073709551615": 1<<64 - 1} {
		if n, ok := parseGen("kp", name); !ok || n != want {
			t.Errorf("%q: %d %v, want %d", name, n, ok, want)
		}
	}
	for _, name := range []string{"kp", "kp_ckpt_", "kp_ckpt_0", "kp_ckpt_01", "kp_ckpt_+1", "kp_ckpt_1_ckpt_2", "kp_ckpt_18446744073709551616", "kpx_ckpt_1", "other_ckpt_1"} {
		if n, ok := parseGen("kp", name); ok {
			t.Errorf("%q parsed as generation %d", name, n)
		}
	}
}

// A keeper that redials NATS rebinds its checkpoint buckets too; one
// deleted around it is made anew rather than failing every redial.
func TestCheckpointGensRebind(t *testing.T) {
	e := newGensEnv(t)
	kv := e.open(t)
	if err := kv.Put(e.ctx, "ckpt.a", []byte("a")); err != nil {
		t.Fatal(err)
	}
	rebind := func() {
		t.Helper()
		e.nc.Close()
		nc, js := dial(t, e.url)
		e.nc, e.js = nc, js
		if err := kv.Rebind(e.ctx, js, testBucket, 1); err != nil {
			t.Fatalf("rebind: %v", err)
		}
	}
	rebind()
	if err := kv.Put(e.ctx, "ckpt.b", []byte("b")); err != nil {
		t.Fatalf("put after rebind: %v", err)
	}
	kv.checkpoints().rollBytes = 1
	for range 4 {
		if err := kv.Put(e.ctx, "ckpt.b", []byte("b")); err != nil {
			t.Fatal(err)
		}
	}
	if err := kv.RollCheckpoints(e.ctx); err != nil {
		t.Fatalf("roll after rebind: %v", err)
	}
	if got := loadStrings(t, e.ctx, kv); !maps.Equal(got, map[string]string{"ckpt.a": "a", "ckpt.b": "b"}) {
		t.Errorf("after rebind and roll: %v", got)
	}
	if err := e.js.DeleteKeyValue(e.ctx, genName(testBucket, e.gens(t)[0])); err != nil {
		t.Fatal(err)
	}
	rebind()
	if err := kv.Put(e.ctx, "ckpt.c", []byte("c")); err != nil {
		t.Fatalf("put after the bucket was deleted and rebound: %v", err)
	}
	if got := loadStrings(t, e.ctx, kv); !maps.Equal(got, map[string]string{"ckpt.c": "c"}) {
		t.Errorf("after the bucket was deleted around the keeper: %v", got)
	}
}
