// Command pondload is pond's load generator for its benchmarks. It runs in
// its own process, talks only to 127.0.0.0/8, and every loop is bounded in
// count and time.
//
//	pondload ws      --base URL --n 15000 [--sources 8] [--pond-pid PID] [--posts 3]
//	    holds N websockets open (user i = token xoxp-pond-<i>), reports pond's
//	    RSS per connection (from /proc/PID/status) and the fan-out time of a
//	    chat.postMessage in #general to every one of them.
//	pondload history --base URL [--duration 10s] [--conns 64] [--limit 20]
//	    POSTs conversations.history in a closed loop and reports requests/s.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "pondload: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: pondload ws|history [flags] (see the package doc)")
	}
	switch args[0] {
	case "ws":
		return runWS(ctx, args[1:], out)
	case "history":
		return runHistory(ctx, args[1:], out)
	}
	return fmt.Errorf("unknown mode %q (want ws or history)", args[0])
}

// checkLoopback refuses any base URL outside 127.0.0.0/8.
func checkLoopback(base string) (*url.URL, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("--base %q: %w", base, err)
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !ip.IsLoopback() || ip.To4() == nil {
		return nil, fmt.Errorf("--base %q: pondload only sends traffic to 127.0.0.0/8", base)
	}
	return u, nil
}

// raiseNoFile lifts the soft open-files limit to the hard limit.
func raiseNoFile() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("setrlimit: %w", err)
	}
	return rl.Cur, nil
}

// rssKiB reads VmRSS of pid from /proc.
func rssKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading RSS: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// post calls an API method as token and decodes the reply.
func post(ctx context.Context, client *http.Client, base, token, method string, form url.Values) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/api/"+method, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("%s: decoding reply: %w", method, err)
	}
	if body["ok"] != true {
		return body, fmt.Errorf("%s: HTTP %d %v", method, resp.StatusCode, body["error"])
	}
	return body, nil
}

// fanoutMarker starts the text of every measured post.
const fanoutMarker = "pondload-fanout-"

func runWS(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("pondload ws", flag.ContinueOnError)
	base := fs.String("base", "http://127.0.0.1:9090", "pond base URL (loopback only)")
	n := fs.Int("n", 15000, "websockets to hold open (users 0..n-1)")
	sources := fs.Int("sources", 8, "bind clients to this many source addresses 127.0.0.2, 127.0.0.3, …")
	conc := fs.Int("concurrency", 256, "handshakes in flight")
	pid := fs.Int("pond-pid", 0, "pond's pid, to read its RSS (0: skip)")
	posts := fs.Int("posts", 3, "fan-out posts to measure, one per second")
	channel := fs.String("channel", "C000000", "channel to post in (#general: every user is a member)")
	settle := fs.Duration("settle", 3*time.Second, "wait after connecting before reading RSS")
	timeout := fs.Duration("timeout", 3*time.Minute, "bound on the whole run")
	rtm := fs.Bool("rtm", false, "connect as koi do: rtm.connect, then dial its url (default: bearer on the upgrade)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	bu, err := checkLoopback(*base)
	if err != nil {
		return err
	}
	if *sources < 1 || *sources > 250 || *n < 1 || *n > 100000 || *posts < 0 || *posts > 100 {
		return errors.New("--sources must be 1..250, --n 1..100000, --posts 0..100")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	lim, err := raiseNoFile()
	if err != nil {
		return err
	}
	if uint64(*n)+64 > lim {
		return fmt.Errorf("--n %d needs more open files than the limit %d", *n, lim)
	}
	var rss0 int64
	if *pid > 0 {
		if rss0, err = rssKiB(*pid); err != nil {
			return err
		}
	}
	wsURL := "ws://" + bu.Host + "/ws"

	// recv[k][i] is when conn i saw post k (unix ns), sentAt[k][i] the
	// event's sent_at (ms); 0 until seen.
	recv := make([][]atomic.Int64, *posts)
	sentAt := make([][]atomic.Uint64, *posts)
	for k := range recv {
		recv[k] = make([]atomic.Int64, *n)
		sentAt[k] = make([]atomic.Uint64, *n)
	}
	var got = make([]atomic.Int64, max(*posts, 1))
	conns := make([]*websocket.Conn, *n)
	var readers sync.WaitGroup
	var hellos atomic.Int64
	var dialErrs atomic.Int64
	var firstErr atomic.Value

	rtmClient := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *conc}}
	start := time.Now()
	sem := make(chan struct{}, *conc)
	var dialing sync.WaitGroup
	for i := 0; i < *n && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		dialing.Add(1)
		go func() {
			defer dialing.Done()
			defer func() { <-sem }()
			src := net.IPv4(127, 0, 0, byte(2+i%*sources))
			d := websocket.Dialer{
				NetDialContext:   (&net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 10 * time.Second}).DialContext,
				HandshakeTimeout: 20 * time.Second,
				ReadBufferSize:   1024,
				WriteBufferSize:  256,
			}
			token := "xoxp-pond-" + strconv.Itoa(i)
			h := http.Header{"Authorization": {"Bearer " + token}}
			target := wsURL
			var c *websocket.Conn
			var err error
			for attempt := 0; attempt < 3; attempt++ {
				if *rtm {
					var body map[string]any
					if body, err = post(ctx, rtmClient, *base, token, "rtm.connect", nil); err != nil {
						continue
					}
					target, _ = body["url"].(string)
					h = nil
				}
				if c, _, err = d.DialContext(ctx, target, h); err == nil {
					break
				}
				time.Sleep(time.Duration(100*(attempt+1)) * time.Millisecond)
			}
			if err != nil {
				dialErrs.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			conns[i] = c
			readers.Add(1)
			go func() {
				defer readers.Done()
				for {
					_, b, err := c.ReadMessage()
					if err != nil {
						return
					}
					now := time.Now().UnixNano()
					if bytes.Contains(b, []byte(`"hello"`)) {
						hellos.Add(1)
						continue
					}
					j := bytes.Index(b, []byte(fanoutMarker))
					if j < 0 {
						continue
					}
					rest := b[j+len(fanoutMarker):]
					e := bytes.IndexByte(rest, '"')
					k, err := strconv.Atoi(string(rest[:max(e, 0)]))
					if err != nil || k < 0 || k >= len(recv) {
						continue
					}
					var ev struct {
						SentAt float64 `json:"sent_at"`
					}
					json.Unmarshal(b, &ev)
					if recv[k][i].CompareAndSwap(0, now) {
						sentAt[k][i].Store(math.Float64bits(ev.SentAt))
						got[k].Add(1)
					}
				}
			}()
		}()
	}
	dialing.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		readers.Wait()
	}()
	connected := *n - int(dialErrs.Load())
	for hellos.Load() < int64(connected) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Fprintf(out, "connected: %d of %d websockets in %.1fs from %d source addresses (open-files limit %d)\n",
		connected, *n, time.Since(start).Seconds(), *sources, lim)
	if e := firstErr.Load(); e != nil {
		fmt.Fprintf(out, "dial errors: %d, first: %s\n", dialErrs.Load(), e)
	}
	if connected == 0 {
		return errors.New("no websocket connected")
	}
	sleepCtx(ctx, *settle)
	if *pid > 0 {
		rss1, err := rssKiB(*pid)
		if err != nil {
			return err
		}
		per := float64(rss1-rss0) * 1024 / float64(connected)
		fmt.Fprintf(out, "pond RSS: %d KiB before, %d KiB with %d websockets: %.0f bytes (%.1f KiB) per connection\n",
			rss0, rss1, connected, per, per/1024)
	}

	client := &http.Client{Timeout: 30 * time.Second}
	for k := 0; k < *posts && ctx.Err() == nil; k++ {
		t0 := time.Now()
		if _, err := post(ctx, client, *base, "xoxp-pond-0", "chat.postMessage",
			url.Values{"channel": {*channel}, "text": {fanoutMarker + strconv.Itoa(k)}}); err != nil {
			return err
		}
		tPost := time.Since(t0)
		deadline := time.Now().Add(20 * time.Second)
		for got[k].Load() < int64(connected) && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		var lat, srv []float64
		for i := range recv[k] {
			if r := recv[k][i].Load(); r != 0 {
				lat = append(lat, float64(r-t0.UnixNano())/1e6)
				sa := math.Float64frombits(sentAt[k][i].Load())
				srv = append(srv, float64(r)/1e6-sa)
			}
		}
		slices.Sort(lat)
		slices.Sort(srv)
		fmt.Fprintf(out, "fan-out %d: %d/%d members got the event; from POST: p50 %.0f ms, p99 %.0f ms, p100 %.0f ms (POST reply %.0f ms); from sent_at: p50 %.0f ms, p100 %.0f ms\n",
			k, len(lat), connected, pct(lat, 50), pct(lat, 99), pct(lat, 100), float64(tPost)/1e6, pct(srv, 50), pct(srv, 100))
		sleepCtx(ctx, time.Second)
	}
	if *pid > 0 && *posts > 0 {
		if rss2, err := rssKiB(*pid); err == nil {
			fmt.Fprintf(out, "pond RSS after %d fan-outs: %d KiB (%.1f KiB per connection over the baseline)\n",
				*posts, rss2, float64(rss2-rss0)/float64(connected))
		}
	}
	return ctx.Err()
}

// pct returns the p-th percentile of sorted xs (NaN when empty).
func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p/100*float64(len(xs)))) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func runHistory(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("pondload history", flag.ContinueOnError)
	base := fs.String("base", "http://127.0.0.1:9090", "pond base URL (loopback only)")
	duration := fs.Duration("duration", 10*time.Second, "how long to run")
	maxReq := fs.Int("max-requests", 2_000_000, "stop after this many requests")
	conns := fs.Int("conns", 64, "concurrent keep-alive connections")
	users := fs.Int("users", 1000, "rotate through the tokens of this many users")
	limit := fs.Int("limit", 20, "conversations.history limit argument")
	channel := fs.String("channel", "C000000", "channel to read")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := checkLoopback(*base); err != nil {
		return err
	}
	if *conns < 1 || *conns > 4096 || *duration <= 0 || *duration > 10*time.Minute || *users < 1 {
		return errors.New("--conns must be 1..4096, --duration 0..10m, --users ≥ 1")
	}
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	body := []byte(url.Values{"channel": {*channel}, "limit": {strconv.Itoa(*limit)}}.Encode())
	var issued atomic.Int64
	type result struct {
		ok, bad  int
		statuses map[int]int
		lat      []time.Duration
	}
	results := make([]result, *conns)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[w]
			r.statuses = map[int]int{}
			buf := make([]byte, 64<<10)
			for k := 0; ctx.Err() == nil && issued.Add(1) <= int64(*maxReq); k++ {
				req, _ := http.NewRequestWithContext(ctx, "POST", *base+"/api/conversations.history", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Authorization", "Bearer xoxp-pond-"+strconv.Itoa((w+k*(*conns))%*users))
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						r.bad++
					}
					continue
				}
				for {
					if _, err := resp.Body.Read(buf); err != nil {
						break
					}
				}
				resp.Body.Close()
				r.statuses[resp.StatusCode]++
				if resp.StatusCode == 200 {
					r.ok++
					if len(r.lat) < 200_000 {
						r.lat = append(r.lat, time.Since(t0))
					}
				} else {
					r.bad++
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	var ok, bad int
	var lat []float64
	statuses := map[int]int{}
	for _, r := range results {
		ok += r.ok
		bad += r.bad
		for s, c := range r.statuses {
			statuses[s] += c
		}
		for _, d := range r.lat {
			lat = append(lat, float64(d)/1e6)
		}
	}
	slices.Sort(lat)
	fmt.Fprintf(out, "conversations.history (limit %d, %d connections, %d tokens): %d ok, %d failed in %.1fs = %.0f req/s; latency p50 %.2f ms, p99 %.2f ms; statuses %v\n",
		*limit, *conns, *users, ok, bad, el.Seconds(), float64(ok)/el.Seconds(), pct(lat, 50), pct(lat, 99), statuses)
	return nil
}
