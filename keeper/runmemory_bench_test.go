package keeper

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/koipond/koipond/metrics"
	"github.com/koipond/koipond/wire"
)

// busyKeys is the key set of a busy run of the demo's Slack behaviors:
// latency keys (behaviors, the API methods they call, websocket connects
// and message round trips, formation steps) and event:* counts.
func busyKeys(latencyKeys int) (lat []string, events []string) {
	behaviors := []string{"conversations.history", "conversations.mark", "chat.postMessage", "reactions.add", "users.info", "typing", "ping", "users.setPresence"}
	methods := []string{"conversations.history", "conversations.mark", "conversations.list", "conversations.info", "conversations.members",
		"chat.postMessage", "chat.update", "reactions.add", "reactions.remove", "users.info", "users.list", "users.setPresence",
		"users.getPresence", "rtm.connect", "auth.test", "team.info", "emoji.list", "files.list"}
	for _, b := range behaviors {
		lat = append(lat, "behavior:"+b)
	}
	for _, m := range methods {
		lat = append(lat, "api:"+m)
	}
	lat = append(lat, "ws:connect", "ws:message", "ws:ping")
	for i := 0; len(lat) < latencyKeys; i++ {
		lat = append(lat, fmt.Sprintf("step:%s:%d", behaviors[i%len(behaviors)], i/len(behaviors)))
	}
	for _, e := range []string{"message", "user_typing", "reaction_added", "presence_change", "channel_marked", "hello", "pong",
		"im_marked", "member_joined_channel", "user_change", "channel_created", "emoji_changed", "desktop_notification", "goodbye", "other"} {
		events = append(events, "event:"+e)
	}
	return lat[:latencyKeys], events
}

// busyReport records secs seconds of one school's observations for a busy
// run: perSec observations a second spread over the latency keys by a
// Zipf-like law (the busiest key gets about a fifth), each key with its
// own log-normal latency (medians from 1 ms to 300 ms, σ 0.5) and a 1%
// tail ten times slower; 1% of calls fail, some are rate limited; events
// arrive at half the call rate.
func busyReport(tb testing.TB, r *rand.Rand, lat, events []string, perSec, secs int) []byte {
	tb.Helper()
	var weights []float64
	var sum float64
	for i := range lat {
		w := 1 / float64(i+1)
		weights = append(weights, w)
		sum += w
	}
	var rec metrics.Recorder
	for i, key := range lat {
		n := int(math.Round(float64(perSec*secs) * weights[i] / sum))
		median := math.Exp(math.Log(1) + float64(i%12)*math.Log(300)/11) // ms
		for range n {
			ms := median * math.Exp(r.NormFloat64()*0.5)
			if r.IntN(100) == 0 {
				ms *= 10
			}
			o := metrics.OK
			switch r.IntN(200) {
			case 0, 1:
				o = metrics.Error
			case 2:
				o = metrics.RateLimited
			}
			rec.Observe(key, time.Duration(ms*float64(time.Millisecond)), o)
		}
	}
	for i, key := range events {
		for range max(1, perSec*secs/2/(i+1)/3) {
			rec.Count(key, metrics.OK)
		}
	}
	data, err := rec.Snapshot().MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// heapInUse returns the live heap after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// BenchmarkRunMemory measures what the keeper retains for one busy
// always-on run at steady state: a day of minutes (fed as one report a
// minute holding a minute of two schools' observations), then an hour of
// seconds (two schools reporting every second). It reports the memory the
// run's series hold (B/run): the heap after GC and their store outside it
// (store-B/run, the encoded buckets rounded up to blocks), and the size of
// the encoded buckets (encoded-B/run). busy is the demo's Slack key set at about
// 2,000 observations a second; keys=500 is the most keys a run may have,
// each as busy as a busy run's median key.
//
//	go test ./keeper -run '^$' -bench RunMemory -benchtime 1x
func BenchmarkRunMemory(b *testing.B) {
	for _, c := range []struct {
		name        string
		latencyKeys int
		perSec      int // observations per school and second
	}{
		{"busy", 50, 1000},
		{"keys=500", 485, 10000},
	} {
		b.Run(c.name, func(b *testing.B) {
			lat, events := busyKeys(c.latencyKeys)
			r := rand.New(rand.NewPCG(14, 16))
			// Distinct reports, cycled: enough variety that buckets do not
			// compress against each other more than real ones would.
			minutes := make([][]byte, 6)
			for i := range minutes {
				minutes[i] = busyReport(b, r, lat, events, 2*c.perSec, 60)
			}
			seconds := make([][]byte, 64)
			for i := range seconds {
				seconds[i] = busyReport(b, r, lat, events, c.perSec, 1)
			}
			// The bucket codec's encoder and decoder are shared by every
			// run: make them before measuring.
			warm := newAggregator()
			for i := range 2 {
				if err := warm.add("warm", time.Unix(int64(i)*1000, 0), &wire.RunMetrics{Run: "warm", Snapshot: minutes[0]}); err != nil {
					b.Fatal(err)
				}
			}
			var heap, encoded, store int64
			for b.Loop() {
				before := heapInUse()
				a := newAggregator()
				base := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
				for m := range coarseSlots {
					if err := a.add("run", base.Add(time.Duration(m)*time.Minute), &wire.RunMetrics{Run: "run", Snapshot: minutes[m%len(minutes)]}); err != nil {
						b.Fatal(err)
					}
				}
				base = base.Add(coarseSlots * time.Minute)
				for s := range 3600 {
					for school := range 2 {
						if err := a.add("run", base.Add(time.Duration(s)*time.Second), &wire.RunMetrics{Run: "run", Snapshot: seconds[(s*2+school+s/64)%len(seconds)]}); err != nil {
							b.Fatal(err)
						}
					}
				}
				a.scratch, a.gather, a.encBuf = nil, nil, nil // buffers shared by every run, not one run's
				store = int64(a.runs["run"].store.held())
				heap = heapInUse() - before + store
				encoded = int64(encodedBytes(a.runs["run"]))
				runtime.KeepAlive(a)
				runtime.KeepAlive(warm)
			}
			b.ReportMetric(float64(heap), "B/run")
			b.ReportMetric(float64(encoded), "encoded-B/run")
			b.ReportMetric(float64(store), "store-B/run")
		})
	}
}

// encodedBytes is the size of a run's encoded buckets.
func encodedBytes(rs *runSeries) int { return rs.bytes }
