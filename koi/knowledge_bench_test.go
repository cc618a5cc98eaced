package koi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/pond"
)

// pondCall makes one api call to pond and returns the reply decoded as a
// koi decodes it.
func pondCall(b *testing.B, p *pond.Server, user int, method string, args url.Values) any {
	req, _ := http.NewRequest(http.MethodPost, p.URL()+"/api/"+method, strings.NewReader(args.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+pond.Token(user))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("%s: %d %v", method, resp.StatusCode, err)
	}
	return body2any(b, body)
}

func body2any(b *testing.B, body []byte) any {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkKoiKnowledge measures what busy koi keep of a workspace, without
// the noise of requests in flight: each of KOI_BENCH_N koi (default 1000)
// runs the demo's own post_actions (examples/slack: boot's addChannels,
// conversations.history's addMessages and addUserIDs) on real pond replies
// (200 channels; 40 channel histories of 42 messages), each reply decoded
// for that koi as it would be off the wire, then the live heap per koi is
// reported for stores that share a run's Workspace and for stores that
// keep their own copies (how koi kept them before).
func BenchmarkKoiKnowledge(b *testing.B) {
	n := envInt(b, "KOI_BENCH_N", 1000)
	p, err := pond.Open(context.Background(), pond.Config{Users: 2000, Channels: 200, DisableRateLimits: true})
	if err != nil {
		b.Fatal(err)
	}
	list, _ := json.Marshal(pondCall(b, p, 1, "conversations.list", url.Values{"limit": {"200"}}))
	var histories [][]byte
	for j := 0; j < 40; j++ {
		h, _ := json.Marshal(pondCall(b, p, 1, "conversations.history", url.Values{"channel": {pond.ChannelID(j)}, "limit": {"42"}}))
		histories = append(histories, h)
	}
	p.Close()

	set := loadSet(b, "../examples/slack/frequencies.json", "../examples/slack/sequences.json")
	addChannels := set.Boot.Steps[1].Post
	history := set.Behavior("conversations.history").Sequence.Steps[0].Post
	for _, mode := range []string{"shared", "private"} {
		b.Run(mode, func(b *testing.B) {
			reportOnce(b, func() []benchMetric {
				w := behaviors.NewWorkspace(0)
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				stores := make([]*behaviors.Store, n)
				for i := range stores {
					id := behaviors.Identity{Index: i, UserID: pond.UserID(i), Token: pond.Token(i)}
					st := behaviors.NewStore(id)
					if mode == "shared" {
						st = behaviors.NewSharedStore(id, w)
					}
					stores[i] = st
					env := &behaviors.Env{Store: st}
					for _, a := range addChannels {
						if err := set.Prog.Run(context.Background(), env, a, body2any(b, list)); err != nil {
							b.Fatal(err)
						}
					}
					for j := 0; j < 40; j++ {
						h := histories[(i+j)%len(histories)]
						env := &behaviors.Env{Store: st}
						env.Vars = map[string]any{"channel": behaviors.Channel{ID: pond.ChannelID((i + j) % len(histories))}}
						for _, a := range history {
							if err := set.Prog.Run(context.Background(), env, a, body2any(b, h)); err != nil {
								b.Fatal(err)
							}
						}
					}
				}
				runtime.GC()
				runtime.GC()
				runtime.ReadMemStats(&after)
				runtime.KeepAlive(stores)
				if len(stores[n-1].Channels()) == 0 || len(stores[n-1].UserIDs()) == 0 {
					b.Fatalf("the stores learned nothing: %d channels", len(stores[n-1].Channels()))
				}
				b.Logf("%s: %d koi, each %d channels, %d user ids; workspace %+v", mode, n,
					len(stores[n-1].Channels()), len(stores[n-1].UserIDs()), w.Stats())
				return []benchMetric{
					{float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n), "heap-bytes/koi"},
					{float64(stores[n-1].KnowledgeBytes()), "knowledge-bytes/koi"},
				}
			})
		})
	}
}
