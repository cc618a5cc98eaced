package warehouse

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/parquet-go/parquet-go"
)

// call is one row of a generated raw call log.
type call struct {
	User, Method, Team, Client string
	T                          time.Time
}

var testMethods = []string{"conversations.history", "chat.postMessage", "users.info", "reactions.add",
	"conversations.mark", "users.setPresence", "files.upload", "search.messages"}

// genCalls makes n calls by users over a span of minutes from start, in
// random order, with a few calls per user-minute to exercise de-duplication.
func genCalls(seed uint64, n, users int, start time.Time, minutes int) []call {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := make([]call, 0, n)
	for len(out) < n {
		u := r.IntN(users)
		m := r.IntN(minutes)
		k := 1 + r.IntN(4)
		for range k {
			method := testMethods[min(r.IntN(len(testMethods)), r.IntN(len(testMethods)))] // skewed
			out = append(out, call{
				User: fmt.Sprintf("U%05d", u), Method: method,
				Team:   fmt.Sprintf("T%d", u%3),
				Client: []string{"desktop", "mobile"}[u%2],
				T:      start.Add(time.Duration(m)*time.Minute + time.Duration(r.IntN(60_000))*time.Millisecond),
			})
		}
	}
	return out[:n]
}

// direct computes frequencies the obvious way, holding every user-minute.
func direct(calls []call) (freq map[string]float64, userMinutes map[string]int64, active int64) {
	type um struct {
		u string
		m int64
	}
	seen := map[um]map[string]bool{}
	for _, c := range calls {
		k := um{c.User, c.T.Unix() / 60}
		if seen[k] == nil {
			seen[k] = map[string]bool{}
		}
		seen[k][c.Method] = true
	}
	userMinutes = map[string]int64{}
	for _, ms := range seen {
		for m := range ms {
			userMinutes[m]++
		}
	}
	freq = map[string]float64{}
	for m, n := range userMinutes {
		freq[m] = float64(n) / float64(len(seen))
	}
	return freq, userMinutes, int64(len(seen))
}

// checkSame fails unless res has exactly the directly computed counts.
func checkSame(t testing.TB, res *Result, calls []call) {
	t.Helper()
	freq, um, active := direct(calls)
	if res.ActiveUserMinutes != active {
		t.Errorf("active user-minutes = %d, want %d", res.ActiveUserMinutes, active)
	}
	if len(res.Methods) != len(freq) {
		t.Errorf("%d methods, want %d", len(res.Methods), len(freq))
	}
	for _, m := range res.Methods {
		if m.UserMinutes != um[m.Name] || m.Frequency != freq[m.Name] {
			t.Errorf("%s: %d user-minutes (f=%v), want %d (f=%v)", m.Name, m.UserMinutes, m.Frequency, um[m.Name], freq[m.Name])
		}
	}
	for i := 1; i < len(res.Methods); i++ {
		if res.Methods[i].Frequency > res.Methods[i-1].Frequency {
			t.Errorf("methods not sorted by frequency at %d", i)
		}
	}
}

// tsStyles are the timestamp spellings CSV parts cycle through.
var tsStyles = []func(time.Time) string{
	func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	func(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) },
	func(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) },
	func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000") },
	func(t time.Time) string { return t.In(time.FixedZone("", -5*3600-30*60)).Format(time.RFC3339) },
}

func csvBytes(calls []call, style int) []byte {
	var b bytes.Buffer
	b.WriteString("user,method,timestamp,team,client\n")
	for _, c := range calls {
		fmt.Fprintf(&b, "%s,%s,%s,%s,%s\n", c.User, c.Method, tsStyles[style%len(tsStyles)](c.T), c.Team, c.Client)
	}
	return b.Bytes()
}

func jsonlBytes(calls []call) []byte {
	var b bytes.Buffer
	for i, c := range calls {
		if i%2 == 0 {
			fmt.Fprintf(&b, "{\"user\":%q,\"method\":%q,\"timestamp\":%q,\"team\":%q,\"client\":%q,\"extra\":{\"a\":[1,2]}}\n",
				c.User, c.Method, c.T.UTC().Format(time.RFC3339Nano), c.Team, c.Client)
		} else {
			fmt.Fprintf(&b, "{ \"timestamp\": %d, \"method\": %q, \"user\": %q, \"team\": %q, \"client\": %q }\n",
				c.T.UnixMilli(), c.Method, c.User, c.Team, c.Client)
		}
	}
	return b.Bytes()
}

type pqCall struct {
	User      string    `parquet:"user"`
	Method    string    `parquet:"method,dict"`
	Timestamp time.Time `parquet:"timestamp,timestamp(millisecond)"`
	Team      string    `parquet:"team,optional"`
	Client    string    `parquet:"client"`
}

func parquetBytes(t testing.TB, calls []call) []byte {
	var b bytes.Buffer
	writeParquet(t, &b, calls)
	return b.Bytes()
}

func writeParquet(t testing.TB, w io.Writer, calls []call) {
	t.Helper()
	pw := parquet.NewGenericWriter[pqCall](w, parquet.MaxRowsPerRowGroup(50_000))
	buf := make([]pqCall, 0, 1024)
	flush := func() {
		if _, err := pw.Write(buf); err != nil {
			t.Fatal(err)
		}
		buf = buf[:0]
	}
	for _, c := range calls {
		buf = append(buf, pqCall{c.User, c.Method, c.T, c.Team, c.Client})
		if len(buf) == cap(buf) {
			flush()
		}
	}
	flush()
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
}

func gz(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

// split cuts calls into n parts.
func split(calls []call, n int) [][]call {
	var parts [][]call
	for i := range n {
		parts = append(parts, calls[i*len(calls)/n:(i+1)*len(calls)/n])
	}
	return parts
}

// s3Server is a real S3-protocol server (gofakes3) on loopback that
// refuses requests signed with another access key.
type s3Server struct {
	URL     string
	backend *s3mem.Backend
	lists   atomic.Int64 // ListObjects requests served
}

const (
	testKeyID  = "AKIAKOIPONDTEST"
	testSecret = "koipond-test-secret"
)

func startS3(t testing.TB) *s3Server {
	t.Helper()
	s := &s3Server{backend: s3mem.New()}
	faker := gofakes3.New(s.backend, gofakes3.WithAutoBucket(false))
	h := faker.Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		if !strings.Contains(auth, "Credential="+testKeyID+"/") {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>`)
			return
		}
		if r.Method == http.MethodGet && r.URL.Query().Has("list-type") {
			s.lists.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	// Only the test's own credentials and endpoint: no shared files, no
	// instance metadata, nothing of the machine's.
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", testKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecret)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	return s
}

func (s *s3Server) bucket(t testing.TB, name string) {
	t.Helper()
	if err := s.backend.CreateBucket(name); err != nil {
		t.Fatal(err)
	}
}

func (s *s3Server) put(t testing.TB, bucket, key string, data []byte) {
	t.Helper()
	if _, err := s.backend.PutObject(bucket, key, map[string]string{}, bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
}

// writeFile writes data under dir, making folders.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func generate(t testing.TB, o Options) *Result {
	t.Helper()
	if o.TempDir == "" {
		o.TempDir = t.TempDir()
	}
	res, err := Generate(context.Background(), o, nil)
	if err != nil {
		t.Fatalf("Generate(%s): %v", o.From, err)
	}
	return res
}

// parquetStream writes calls to one Parquet file in batches.
type parquetStream struct {
	t  testing.TB
	pw *parquet.GenericWriter[pqCall]
	b  []pqCall
}

func newParquetStream(t testing.TB, w io.Writer) *parquetStream {
	return &parquetStream{t: t, pw: parquet.NewGenericWriter[pqCall](w, parquet.MaxRowsPerRowGroup(500_000))}
}

func (s *parquetStream) write(calls []call) {
	s.b = s.b[:0]
	for _, c := range calls {
		s.b = append(s.b, pqCall{c.User, c.Method, c.T, c.Team, c.Client})
	}
	if _, err := s.pw.Write(s.b); err != nil {
		s.t.Fatal(err)
	}
}

func (s *parquetStream) close() {
	if err := s.pw.Close(); err != nil {
		s.t.Fatal(err)
	}
}
