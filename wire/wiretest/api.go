package wiretest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

// maxReply bounds what API reads of a reply (reports and CSV exports are
// the largest, well under it).
const maxReply = 64 << 20

// apiClient is API's HTTP client: a timeout so a hung server fails the
// test instead of stalling it.
var apiClient = &http.Client{Timeout: 30 * time.Second}

// API calls the keeper's HTTP API: JSON in, JSON out, with a bearer token
// when one is set.
type API struct {
	// Base is prefixed to every path: "http://ADDR" to give full paths
	// ("/api/v1/runs", "/metrics"), or "http://ADDR/api/v1" for short ones.
	Base string
	// Token, when not empty, is sent as "Authorization: Bearer TOKEN".
	Token string
}

// Do sends body to method Base+path and returns the HTTP status. A string
// or []byte body is sent as it is (to send malformed JSON); anything else
// is encoded as JSON. When out is not nil the reply, whatever its status,
// is decoded into it. A transport error, an unreadable reply or one that
// does not decode into out fails tb.
func (a API) Do(tb testing.TB, method, path string, body, out any) int {
	tb.Helper()
	st, data := a.send(tb, method, path, body)
	a.decode(tb, method, path, st, data, out)
	return st
}

// Call is Do for a request that must succeed: a status of 300 or more
// fails tb with the reply's start, before anything is decoded.
func (a API) Call(tb testing.TB, method, path string, body, out any) {
	tb.Helper()
	st, data := a.send(tb, method, path, body)
	if st >= 300 {
		tb.Fatalf("%s %s: HTTP %d: %.300s", method, path, st, bytes.TrimSpace(data))
		return
	}
	a.decode(tb, method, path, st, data, out)
}

// send makes the request and reads the reply, failing tb when it cannot.
func (a API) send(tb testing.TB, method, path string, body any) (int, []byte) {
	tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			tb.Fatalf("%s %s: encoding the body: %v", method, path, err)
			return 0, nil
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, a.Base+path, rd)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
		return 0, nil
	}
	req.Header.Set("Content-Type", "application/json")
	if a.Token != "" {
		req.Header.Set("Authorization", "Bearer "+a.Token)
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
		return 0, nil
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		tb.Fatalf("%s %s: HTTP %d: reading the reply: %v", method, path, resp.StatusCode, err)
	}
	return resp.StatusCode, data
}

// decode unmarshals a reply into out, when out is not nil.
func (a API) decode(tb testing.TB, method, path string, status int, data []byte, out any) {
	tb.Helper()
	if out == nil {
		return
	}
	if err := json.Unmarshal(data, out); err != nil {
		tb.Fatalf("%s %s: HTTP %d: %v: %.300s", method, path, status, err, data)
	}
}
