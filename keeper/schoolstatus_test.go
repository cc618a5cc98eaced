package keeper

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/koipond/koipond/wire"
	"github.com/koipond/koipond/wire/wiretest"
)

// maxedPoll is a poll within every wire bound and as large as they allow
// (about 5 MB): run reported once, as refused and at its memory ceiling,
// beside made-up runs and launches, every text field wire.MaxText long.
func maxedPoll(id, run string) *wire.PollRequest {
	big := strings.Repeat("x", wire.MaxText)
	req := &wire.PollRequest{School: id, Software: big, Capacity: 0, Clock: time.Now(),
		KoiRunning: wire.MaxKoi, WebsocketsOpen: wire.MaxKoi}
	req.Runs = append(req.Runs, wire.RunStatus{Run: run, Koi: wire.KoiCounts{Connected: 5}, Refused: big, Pressure: big, PressureAt: time.Now()})
	for i := len(req.Runs); i < wire.MaxRunsPerMessage; i++ {
		req.Runs = append(req.Runs, wire.RunStatus{Run: fmt.Sprintf("%s-%0100d", id, i), Refused: big, Pressure: big, PressureAt: time.Now()})
	}
	offs := make([]uint32, wire.LaunchOffsetBins)
	for i := 0; i < wire.MaxLaunchesPerMessage; i++ {
		req.Launches = append(req.Launches, wire.LaunchStatus{Launch: fmt.Sprintf("%s-l%0100d", id, i), Error: big, Offsets: offs})
	}
	return req
}

// rawPoll sends an encoded poll and returns the reply.
func rawPoll(t testing.TB, nc *nats.Conn, data []byte) *wire.PollReply {
	t.Helper()
	m, err := nc.Request(wire.SubjectPoll, data, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var rep wire.PollReply
	if err := wire.Decode(m.Data, &rep); err != nil {
		t.Fatal(err)
	}
	return &rep
}

// heapBytes is the live heap after a full collection.
func heapBytes() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// schoolJSON returns each school's JSON in GET /api/v1/schools, by id.
func schoolJSON(t testing.TB, k *Keeper) (map[string]int, int) {
	t.Helper()
	body := apiText(t, k, "/api/v1/schools")
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range raw {
		var s struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(r, &s); err != nil {
			t.Fatal(err)
		}
		out[s.ID] = len(r)
	}
	return out, len(body)
}

// firstEvents reads the first n status events of GET /api/v1/events and
// returns the size of each one's data.
func firstEvents(t testing.TB, k *Keeper, n int) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+k.HTTPAddr()+"/api/v1/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sizes []int
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	for len(sizes) < n && sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			sizes = append(sizes, len(data))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return sizes
}

// Whatever schools report, the keeper keeps and shows a few hundred
// bytes of each: schools polling under many ids, each poll as large as
// the wire's bounds allow (and reporting, on a run they do not hold, a
// refusal and a memory ceiling), cost no more memory and no more bytes
// in GET /api/v1/schools, /api/v1/status and the event stream than an
// honest school does. The keeper kept every poll whole: each school
// cost the keeper about its poll's size (4.7 MB) for ever, and every
// status call and status event served them all.
func TestSchoolsKeepLittleOfTheirPolls(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	run := seedRun(t, k, 10)
	honest := newFakeSchool(t, k, "honest", 100)
	wiretest.WaitFor(t, 10*time.Second, "the honest school to report its koi", func() error {
		honest.poll()
		if v := k.RunView(k.State(), run.ID); v.KoiNow.Connected != 10 {
			return fmt.Errorf("%d of 10 koi connected", v.KoiNow.Connected)
		}
		return nil
	})
	sizes, _ := schoolJSON(t, k)
	honestSize := sizes["honest"]
	statusBefore := len(apiText(t, k, "/api/v1/status"))
	t.Logf("the honest school's view: %d bytes; the status: %d bytes", honestSize, statusBefore)

	nc := schoolConn(t, k)
	defer nc.Close()
	// One poll first: the connections' buffers grow to fit one, once.
	warm, err := wire.Encode(maxedPoll("warm", run.ID))
	if err != nil {
		t.Fatal(err)
	}
	rawPoll(t, nc, warm)
	const liars = 6
	polls := make([][]byte, liars)
	for i := range polls {
		if polls[i], err = wire.Encode(maxedPoll(fmt.Sprintf("liar-%d", i), run.ID)); err != nil {
			t.Fatal(err)
		}
	}
	before := heapBytes()
	for i, data := range polls {
		if rep := rawPoll(t, nc, data); rep.Error != "" {
			t.Fatalf("poll of liar-%d refused: %s", i, rep.Error)
		}
	}
	grown := heapBytes() - before
	t.Logf("%d polls of %d bytes each: heap %+d bytes", liars, len(polls[0]), grown)
	// A tenth of a poll per school is far more than a summary takes, and
	// far less than the poll.
	if limit := int64(liars * len(polls[0]) / 10); grown > limit {
		t.Errorf("the heap grew by %d bytes for %d schools, over %d (a tenth of each poll)", grown, liars, limit)
	}

	// A liar's view is no larger than twice the honest school's (which
	// holds koi); the views and the status grow by that much per school.
	perSchool := 2 * honestSize
	sizes, total := schoolJSON(t, k)
	for id, n := range sizes {
		if n > perSchool {
			t.Errorf("GET /api/v1/schools: school %s takes %d bytes, over %d (twice the honest school's)", id, n, perSchool)
		}
	}
	if len(sizes) != liars+2 {
		t.Errorf("GET /api/v1/schools: %d schools, want %d", len(sizes), liars+2)
	}
	t.Logf("GET /api/v1/schools: %d bytes", total)
	limit := statusBefore + (liars+1)*perSchool
	status := len(apiText(t, k, "/api/v1/status"))
	t.Logf("GET /api/v1/status: %d bytes", status)
	if status > limit {
		t.Errorf("GET /api/v1/status: %d bytes, over %d", status, limit)
	}
	for i, n := range firstEvents(t, k, 2) {
		if n > limit {
			t.Errorf("status event %d: %d bytes, over %d", i+1, n, limit)
		}
	}

	// What the views read is still there: the liar's koi of the run
	// count as reported, its refusal of a run it does not hold does not.
	sc := k.State().School(nil, "liar-0")
	if sc == nil || sc.Status == nil {
		t.Fatalf("liar-0: %v", sc)
	}
	st := sc.Status
	if len(st.Runs) != 1 || st.Runs[0].Run != run.ID || st.Runs[0].Koi.Connected != 5 || st.Runs[0].Refused != "" ||
		st.WebsocketsOpen != wire.MaxKoi {
		first, _ := json.Marshal(st.Runs[:min(1, len(st.Runs))])
		t.Errorf("liar-0's status: %d runs (first %.300s), %d websockets; want the run alone, 5 koi connected, no refusal, %d websockets",
			len(st.Runs), first, st.WebsocketsOpen, wire.MaxKoi)
	}
}
