package koi_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/koipond/koipond/koi"
)

// bubbleTransport lets koi inside a testing/synctest bubble send their HTTP
// requests over real keep-alive sockets. Each request is handed to a worker
// goroutine outside the bubble, which sends it with an ordinary client and
// reads the whole reply. While a request is out, the koi's goroutine waits
// on channels made outside the bubble, which does not count as durably
// blocked, so the bubble's clock stands still: on the koi's clock every
// request leaves the instant its step runs and is answered at once, however
// starved the process is. (A transport inside the bubble would need
// keep-alives off, one TCP connection per request, since a goroutine parked
// on an idle socket stops the bubble's clock for good.)
//
// It notes the bubble time at which each request was handed to it.
type bubbleTransport struct {
	jobs chan bubbleJob
	// pool holds reply channels, all made outside the bubble (a goroutine
	// outside the bubble may not send on a channel made inside it).
	pool chan chan bubbleReply
	wg   sync.WaitGroup
	once sync.Once

	mu   sync.Mutex
	sent []sentCall
}

type bubbleJob struct {
	req   *http.Request
	reply chan bubbleReply
}

type bubbleReply struct {
	resp *http.Response
	err  error
}

// sentCall is one request as the koi sent it, on the bubble's clock.
type sentCall struct {
	Method string // the last path element: the API method
	Token  string
	At     time.Time
}

// newBubbleTransport starts workers (outside any bubble: call it before
// synctest.Test) sending over a keep-alive client with at most that many
// connections; they end at the test's cleanup.
func newBubbleTransport(t testing.TB, workers int) *bubbleTransport {
	t.Helper()
	bt := &bubbleTransport{jobs: make(chan bubbleJob), pool: make(chan chan bubbleReply, 4*workers)}
	for range cap(bt.pool) {
		bt.pool <- make(chan bubbleReply, 1)
	}
	client := koi.NewHTTPClient(workers, nil)
	for range workers {
		bt.wg.Add(1)
		go func() {
			defer bt.wg.Done()
			for j := range bt.jobs {
				j.reply <- roundTripWhole(client, j.req)
			}
		}()
	}
	t.Cleanup(func() {
		bt.finish()
		client.CloseIdleConnections()
	})
	return bt
}

// finish waits for the requests still out (those the koi gave up on at
// stop) and ends the workers; call it once the bubble has ended.
func (bt *bubbleTransport) finish() {
	bt.once.Do(func() {
		close(bt.jobs)
		bt.wg.Wait()
	})
}

// roundTripWhole sends req and reads its whole reply (the koi cap their
// reads at koi.MaxResponseBody; one byte more lets them see the excess).
func roundTripWhole(client *http.Client, req *http.Request) bubbleReply {
	resp, err := client.Transport.RoundTrip(req)
	if err != nil {
		return bubbleReply{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, koi.MaxResponseBody+1))
	if err != nil {
		return bubbleReply{err: err}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return bubbleReply{resp: resp}
}

// RoundTrip runs on the koi's goroutine, inside the bubble.
func (bt *bubbleTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	c := sentCall{At: time.Now(), Token: strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")}
	c.Method = req.URL.Path[strings.LastIndexByte(req.URL.Path, '/')+1:]
	bt.mu.Lock()
	bt.sent = append(bt.sent, c)
	bt.mu.Unlock()

	// The request goes out with a context from outside the bubble: the
	// worker must not wait on the bubble's timers or channels. Stop is
	// still seen here, on the koi's side.
	out := req.Clone(context.Background())
	var reply chan bubbleReply
	select {
	case reply = <-bt.pool:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case bt.jobs <- bubbleJob{req: out, reply: reply}:
	case <-ctx.Done():
		bt.pool <- reply
		return nil, ctx.Err()
	}
	select {
	case r := <-reply:
		bt.pool <- reply
		if r.resp != nil {
			r.resp.Request = req
		}
		return r.resp, r.err
	case <-ctx.Done():
		// The worker still answers on reply (it has room for one); the
		// channel leaves the pool, which only happens at stop.
		return nil, ctx.Err()
	}
}

// calls returns the requests sent so far.
func (bt *bubbleTransport) calls() []sentCall {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	return append([]sentCall(nil), bt.sent...)
}
