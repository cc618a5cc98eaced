package pond

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/koipond/koipond/wire/wiretest"

	"github.com/gorilla/websocket"
)

// The speed targets (15,000 websockets from a separate process, fan-out
// p100 ≤ 1 s, ≤ 16 KiB RSS per connection, ≥ 10,000 history req/s) are
// measured by pond/bench.sh; these in-process benchmarks track the same
// paths at a size that fits `go test -bench`.

// BenchmarkHistory measures conversations.history (limit 20) over loopback
// HTTP with keep-alive clients.
func BenchmarkHistory(b *testing.B) {
	s := openTest(b, Config{Users: 2000, Channels: 50, DisableRateLimits: true})
	body := []byte("channel=C000000&limit=20")
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 32<<10)
		for pb.Next() {
			req, _ := http.NewRequest("POST", s.URL()+"/api/conversations.history", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", "Bearer "+Token(int(n.Add(1)%2000)))
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			for {
				if _, err := resp.Body.Read(buf); err != nil {
					break
				}
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkFanOut1000 measures one post in #general reaching 1,000
// connected members: the time until the last one has it.
func BenchmarkFanOut1000(b *testing.B) {
	const n = 1000
	s := openTest(b, Config{Users: n, Channels: 10, DisableRateLimits: true})
	var got atomic.Int64
	var wg sync.WaitGroup
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+s.Addr()+"/ws", http.Header{"Authorization": {"Bearer " + Token(i)}})
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, m, err := c.ReadMessage()
				if err != nil {
					return
				}
				if bytes.Contains(m, []byte(`"type":"message"`)) {
					got.Add(1)
				}
			}
		}()
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}()
	wiretest.Until(b, 10*time.Second, "registrations", func() bool { return s.Stats().WebsocketsOpen == n })
	var worst time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got.Store(0)
		t0 := time.Now()
		call(b, s, Token(0), "chat.postMessage", map[string]string{"channel": "C000000", "text": "bench " + strconv.Itoa(i)})
		for got.Load() < n {
			if time.Since(t0) > 10*time.Second {
				b.Fatalf("only %d of %d members got the event", got.Load(), n)
			}
			time.Sleep(100 * time.Microsecond)
		}
		worst = max(worst, time.Since(t0))
	}
	b.ReportMetric(float64(worst)/1e6, "ms-p100-worst")
}
