package koi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/metrics"
)

// requestError is a failed request, classified for metrics: its outcome,
// and (when set) the short reason and sample its failure is counted under
// (see reasonOf; otherwise the reason is msg's first line).
type requestError struct {
	outcome metrics.Outcome
	msg     string
	reason  string
	sample  string
}

func (e *requestError) Error() string { return e.outcome.String() + ": " + e.msg }

// StepError is a sequence that failed at a step.
type StepError struct {
	Where string // e.g. `behavior "x" › step 1`
	Err   error
}

func (e *StepError) Error() string { return e.Where + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *StepError) Unwrap() error { return e.Err }

// outcomeOf classifies how a sequence ended.
func outcomeOf(ctx context.Context, err error) metrics.Outcome {
	var re *requestError
	switch {
	case err == nil:
		return metrics.OK
	case errors.Is(err, behaviors.ErrHalt):
		return metrics.Halted
	case ctx.Err() != nil:
		return metrics.Canceled
	case errors.As(err, &re):
		return re.outcome
	case errors.Is(err, context.DeadlineExceeded):
		return metrics.Timeout
	}
	return metrics.Error
}

// execute runs a sequence's steps in order. Each non-empty stepKey also
// records each step's request under "<stepKey>:<n>". Every wait watches
// ctx, so pause and stop abort a sequence at once. A step's decoded reply
// keeps its reservation in the reply budget until its post_actions have
// run: they are where it is read, and may wait for a template executor.
func (k *Koi) execute(ctx context.Context, seq *behaviors.Sequence, env *behaviors.Env, stepKeys ...string) error {
	prog := seq.Prog
	for i := range seq.Steps {
		st := &seq.Steps[i]
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, a := range st.Pre {
			if err := prog.Run(ctx, env, a, nil); err != nil {
				return &StepError{Where: st.Where, Err: err}
			}
		}
		var data any
		var release func() // the reply's reservation (nil: none held)
		if st.Request != nil {
			start := time.Now()
			// A reply is decoded only when a post_action can read it.
			d, rel, took, err := k.request(ctx, prog, env, st.Request, prog.ReadsData(st.Post...))
			if took <= 0 {
				took = time.Since(start)
			}
			o := outcomeOf(ctx, err)
			record(k.rt.series(st.Request.Key), took, o, err)
			for _, sk := range stepKeys {
				if sk != "" {
					record(k.rt.series(sk+":"+strconv.Itoa(i+1)), took, o, err)
				}
			}
			if err != nil {
				return &StepError{Where: st.Where, Err: err}
			}
			data, release = d, rel
		}
		err := post(ctx, prog, env, st, data)
		if release != nil {
			release()
		}
		if err != nil {
			return err
		}
		if len(st.Choose) > 0 {
			if err := k.choose(ctx, st, env); err != nil {
				return err
			}
		}
		if d := k.delayOf(st); d > 0 && !sleepCtx(ctx, k.rt.Scale(d)) {
			return ctx.Err()
		}
	}
	return nil
}

// post runs a step's post_actions on its decoded reply.
func post(ctx context.Context, prog *behaviors.Program, env *behaviors.Env, st *behaviors.Step, data any) error {
	for _, a := range st.Post {
		if err := prog.Run(ctx, env, a, data); err != nil {
			return &StepError{Where: st.Where, Err: err}
		}
	}
	return nil
}

// request performs one request and returns the decoded response (for api
// and http requests only when decode is set: nothing reads it otherwise),
// the release of its reservation in the reply budget, which the caller
// calls once done with the response (nil when none is held, and always on
// error), and its latency when that is not the time the call took (0:
// measure the call).
func (k *Koi) request(ctx context.Context, prog *behaviors.Program, env *behaviors.Env, r *behaviors.Request, decode bool) (any, func(), time.Duration, error) {
	switch r.Type {
	case behaviors.API:
		v, release, err := k.api(ctx, prog, env, r, decode)
		return v, release, 0, err
	case behaviors.HTTP:
		v, release, err := k.httpRequest(ctx, prog, env, r, decode)
		return v, release, 0, err
	case behaviors.WS:
		return k.ws(ctx, prog, env, r)
	case behaviors.Connect:
		return nil, nil, 0, k.connectNow(ctx, r)
	}
	return nil, nil, 0, fmt.Errorf("unknown request type %q", r.Type)
}

func (k *Koi) timeout(r *behaviors.Request) time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return k.rt.cfg.RequestTimeout
}

// api performs an api request; with decode, the decoded reply comes with
// the release of its reservation (see request).
func (k *Koi) api(ctx context.Context, prog *behaviors.Program, env *behaviors.Env, r *behaviors.Request, decode bool) (any, func(), error) {
	if k.rt.cfg.APIBase == "" {
		return nil, nil, &requestError{outcome: metrics.Error, msg: fmt.Sprintf("api request %q: no API base URL is configured (the run's target.api_base)", r.Method), reason: reasonNoAPIBase}
	}
	form := make(url.Values, len(r.Args))
	budget := prog.NewBudget() // the arguments together, as the request holds them all
	for _, a := range r.Args {
		v, err := prog.Render(ctx, env, a.Value, nil)
		if err != nil {
			return nil, nil, err
		}
		if err := budget.Charge("the request's arguments", len(a.Name)+len(v)); err != nil {
			return nil, nil, err
		}
		form.Set(a.Name, v)
	}
	if err := k.waitRetryAfter(ctx); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout(r))
	defer cancel()
	u, err := k.rt.apiURL(r.Method)
	if err != nil {
		return nil, nil, err
	}
	req := newPost(ctx, u, form.Encode())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if tok := env.Store.Identity().Token; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	status, body, release, err := k.do(req, false)
	if err != nil {
		return nil, nil, err
	}
	if !decode {
		defer release()
		return nil, nil, replyOutcome(status, body)
	}
	v, derr := decodeJSON(body)
	if derr != nil {
		defer release()
		return nil, nil, &requestError{outcome: metrics.Error, msg: fmt.Sprintf("HTTP %d: reply is not JSON: %v", status, derr),
			reason: reasonNotJSON, sample: bodySample(body)}
	}
	if m, ok := v.(map[string]any); ok {
		if okv, present := m["ok"]; present && okv == false {
			defer release()
			e, _ := m["error"].(string)
			return nil, nil, okFalseError(e, body)
		}
	}
	return v, release, nil
}

// newPost is http.NewRequestWithContext for a POST of body to u, which it
// shares (u is not changed: api requests follow no redirect).
func newPost(ctx context.Context, u *url.URL, body string) *http.Request {
	req := &http.Request{Method: http.MethodPost, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: make(http.Header, 2), Host: u.Host, Body: http.NoBody}
	if body != "" {
		req.Body = io.NopCloser(strings.NewReader(body))
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
	}
	return req.WithContext(ctx)
}

// do sends a request and classifies the reply: transport failures,
// timeouts, 429 (remembering Retry-After), 4xx and 5xx are errors. With
// follow, redirects are followed (an http step's URL may move); an api
// step's request goes straight to the transport. The body is the caller's
// until it calls release (never nil when err is nil).
func (k *Koi) do(req *http.Request, follow bool) (int, []byte, func(), error) {
	var resp *http.Response
	var err error
	if follow {
		resp, err = k.rt.http.Do(req)
	} else if resp, err = k.rt.roundTripper().RoundTrip(req); err != nil {
		err = &url.Error{Op: urlErrorOp(req.Method), URL: req.URL.String(), Err: err}
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) { // the transport says so only once past the deadline
			return 0, nil, nil, &requestError{outcome: metrics.Timeout, msg: err.Error(), reason: reasonTimeout}
		}
		return 0, nil, nil, &requestError{outcome: metrics.Transport, msg: err.Error(), reason: transportReason(err)}
	}
	defer resp.Body.Close()
	body, release, err := k.readBody(resp)
	if err != nil {
		return resp.StatusCode, nil, nil, err
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		k.noteRetryAfter(resp.Header.Get("Retry-After"))
	}
	if o := statusOutcome(resp.StatusCode); o != metrics.OK {
		err := &requestError{outcome: o, msg: "HTTP " + resp.Status, reason: httpReason(resp.StatusCode), sample: bodySample(body)}
		release()
		return resp.StatusCode, nil, nil, err
	}
	return resp.StatusCode, body, release, nil
}

// urlErrorOp names a method as http.Client's errors do ("Post").
func urlErrorOp(method string) string {
	if method == "" {
		return "Get"
	}
	return method[:1] + strings.ToLower(method[1:])
}

func statusOutcome(code int) metrics.Outcome {
	switch {
	case code == http.StatusTooManyRequests:
		return metrics.RateLimited
	case code >= 500:
		return metrics.ServerError
	case code >= 400:
		return metrics.ClientError
	case code >= 200 && code < 400:
		return metrics.OK
	}
	return metrics.Error
}

// noteRetryAfter makes this koi's next requests wait (seconds or an HTTP
// date; capped at MaxRetryAfter; 1 s when absent or unreadable).
func (k *Koi) noteRetryAfter(h string) {
	d := time.Second
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s >= 0 {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = time.Until(t)
	}
	d = min(max(d, 0), MaxRetryAfter)
	k.mu.Lock()
	if at := time.Now().Add(d); at.After(k.retryAt) {
		k.retryAt = at
	}
	k.mu.Unlock()
}

func (k *Koi) waitRetryAfter(ctx context.Context) error {
	k.mu.Lock()
	at := k.retryAt
	k.mu.Unlock()
	if d := time.Until(at); d > 0 && !sleepCtx(ctx, d) {
		return ctx.Err()
	}
	return nil
}

func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// httpRequest performs an http request; with decode, the decoded reply
// comes with the release of its reservation (see request).
func (k *Koi) httpRequest(ctx context.Context, prog *behaviors.Program, env *behaviors.Env, r *behaviors.Request, decode bool) (any, func(), error) {
	u, err := prog.Render(ctx, env, r.URL, nil)
	if err != nil {
		return nil, nil, err
	}
	budget := prog.NewBudget() // URL, body and headers together, as the request holds them all
	if err := budget.Charge("the request's URL", len(u)); err != nil {
		return nil, nil, err
	}
	var body io.Reader
	ctype := ""
	switch {
	case r.JSON != nil:
		v, err := r.JSON.Render(ctx, prog, env, nil)
		if err != nil {
			return nil, nil, err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, nil, err
		}
		body, ctype = bytes.NewReader(b), "application/json"
	case r.HasBody:
		s, err := prog.Render(ctx, env, r.Body, nil)
		if err != nil {
			return nil, nil, err
		}
		if err := budget.Charge("the request's body", len(s)); err != nil {
			return nil, nil, err
		}
		body = strings.NewReader(s)
	}
	if err := k.waitRetryAfter(ctx); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout(r))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.Method, u, body)
	if err != nil {
		return nil, nil, &requestError{outcome: metrics.Error, msg: err.Error()}
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for _, h := range r.Headers {
		v, err := prog.Render(ctx, env, h.Value, nil)
		if err != nil {
			return nil, nil, err
		}
		if err := budget.Charge("the request's headers", len(h.Name)+len(v)); err != nil {
			return nil, nil, err
		}
		req.Header.Set(h.Name, v)
	}
	_, b, release, err := k.do(req, true)
	if err != nil {
		return nil, nil, err
	}
	if !decode {
		release()
		return nil, nil, nil
	}
	if v, err := decodeJSON(b); err == nil {
		return v, release, nil
	}
	return string(b), release, nil
}

// wsPayload renders what a ws request sends: nil when it only awaits.
func wsPayload(ctx context.Context, prog *behaviors.Program, env *behaviors.Env, r *behaviors.Request) ([]byte, int, error) {
	switch {
	case r.JSON != nil:
		v, err := r.JSON.Render(ctx, prog, env, nil)
		if err != nil {
			return nil, 0, err
		}
		b, err := json.Marshal(v)
		return b, websocket.TextMessage, err
	case r.HasText:
		s, err := prog.Render(ctx, env, r.Text, nil)
		return []byte(s), websocket.TextMessage, err
	case r.HasBinary:
		s, err := prog.Render(ctx, env, r.Binary, nil)
		if err != nil {
			return nil, 0, err
		}
		b, err := r.Encoding.Decode(s)
		if err != nil {
			return nil, 0, &requestError{outcome: metrics.Error, msg: r.Binary.Where + ": " + err.Error(), reason: "template: binary payload: " + firstLine(err.Error())}
		}
		return b, websocket.BinaryMessage, nil
	}
	return nil, 0, nil
}

// ws sends a request's frame and waits for what it declared: the awaited
// frame (its value is the response), an error frame (outcome Error), or,
// for a send with only an error declaration, the end of its window (then
// the latency is the send's, not the window's).
func (k *Koi) ws(ctx context.Context, prog *behaviors.Program, env *behaviors.Env, r *behaviors.Request) (any, func(), time.Duration, error) {
	start := time.Now()
	frame, msgType, err := wsPayload(ctx, prog, env, r)
	if err != nil {
		return nil, nil, 0, err
	}
	// The await's and the error's per-request parts are rendered before the
	// send, so the reply is matched by what this request generated.
	budget := prog.NewBudget()
	var await, fail *behaviors.BoundMatch
	if r.Await != nil {
		if await, err = r.Await.Bind(ctx, prog, env, budget); err != nil {
			return nil, nil, 0, err
		}
	}
	if r.Error != nil {
		if fail, err = r.Error.Bind(ctx, prog, env, budget); err != nil {
			return nil, nil, 0, err
		}
	}
	var w *waiter
	if await != nil || fail != nil {
		w = k.addWaiter(await, fail)
		defer func() {
			k.removeWaiter(w)
			await.Close() // waits out a `when` the reader may be rendering
			fail.Close()
		}()
	}
	if frame != nil {
		if err := k.sendFrame(ctx, k.timeout(r), msgType, frame); err != nil {
			if errors.Is(err, errNotConnected) {
				return nil, nil, 0, err
			}
			return nil, nil, 0, &requestError{outcome: metrics.Transport, msg: err.Error(), reason: transportReason(err)}
		}
	}
	if w == nil {
		return nil, nil, 0, nil
	}
	sent := time.Since(start)
	var wait time.Duration
	if await != nil {
		wait = r.Await.Timeout
	} else {
		wait = r.Error.Within
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case d := <-w.ch:
		if d.isErr {
			defer d.hold.drop()
			return nil, nil, 0, &requestError{outcome: metrics.Error, msg: "error frame: " + quoteFrame(d.f.Raw),
				reason: reasonErrorFrame, sample: bodySample(d.f.Raw)}
		}
		return d.f.Value, d.hold.dropFunc(), 0, nil
	case <-t.C:
		if await == nil {
			return nil, nil, max(sent, time.Nanosecond), nil // no error frame within the window: the send succeeded
		}
		msg := fmt.Sprintf("no matching frame within %v", r.Await.Timeout)
		if n, err := await.WhenError(); n > 0 {
			msg += fmt.Sprintf(" (\"when\" failed on %d frames: %v)", n, err)
		}
		return nil, nil, 0, &requestError{outcome: metrics.Timeout, msg: msg, reason: reasonTimeout}
	case <-ctx.Done():
		return nil, nil, 0, ctx.Err()
	}
}
