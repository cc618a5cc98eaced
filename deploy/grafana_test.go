package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/koipond/koipond/wire/wiretest"

	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/api"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/pond"
	"github.com/koipond/koipond/school"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

var metricName = regexp.MustCompile(`\bkoipond_[a-z0-9_]+\b`)

// The shipped Grafana dashboard matches the keeper: (a) it parses, has a
// run variable from label_values(koipond_run_koi, run) and a panel for
// each of the UI's six run charts; (b) every metric its panels and
// variables use is on the /metrics of a real keeper running a run
// against pond through a real school, with series for that run; (c) the
// scrape is valid Prometheus text (prometheus/common's parser, and no
// series twice), even with a run name that needs escaping.
func TestGrafanaDashboardMatchesKeeperMetrics(t *testing.T) {
	data, err := os.ReadFile("grafana/koipond-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Definition
	}
	if vars["run"] != "label_values(koipond_run_koi, run)" {
		t.Errorf("run variable: %q", vars["run"])
	}
	// The UI's run charts, by title, each have a panel.
	js, err := os.ReadFile("../ui/static/run.js")
	if err != nil {
		t.Fatal(err)
	}
	charts := regexp.MustCompile(`new Chart\('([^']+)'`).FindAllStringSubmatch(string(js), -1)
	if len(charts) != 6 {
		t.Fatalf("found %d charts in run.js, want 6", len(charts))
	}
	titles := map[string]bool{}
	used := map[string]bool{}
	for _, p := range d.Panels {
		titles[p.Title] = true
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				used[m] = true
			}
		}
	}
	for _, c := range charts {
		if !titles[c[1]] {
			t.Errorf("no panel for the UI chart %q", c[1])
		}
	}
	for _, want := range []string{"Global switch", "Schools"} {
		if !titles[want] {
			t.Errorf("no %q panel", want)
		}
	}
	for _, def := range vars {
		for _, m := range metricName.FindAllString(def, -1) {
			used[m] = true
		}
	}

	// A real keeper, pond and school; a run whose name needs escaping.
	ctx := context.Background()
	k, err := api.Open(ctx, keeper.Config{HTTP: "127.0.0.1:0", NATSListen: "127.0.0.1:-1", DataDir: t.TempDir(),
		PollInterval: 200 * time.Millisecond, Lease: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	p, err := pond.Open(ctx, pond.Config{Users: 100, Channels: 5, DisableRateLimits: true,
		Inject: map[string]pond.Fault{"auth.test": {Error: 0.2}}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s, err := school.Open(ctx, school.Config{ID: "a", NATSURL: k.NATSURL(), NATSNKeySeedFile: k.SchoolNKeyFile(), Capacity: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	set := `{"boot": {"steps": [{"request": {"type": "api", "method": "rtm.connect", "post_actions": ["{{ websocketURL .url }}"]}}]},
	  "behaviors": {"tick": {"frequency": 1, "steps": [{"request": {"type": "api", "method": "auth.test"}},
	    {"request": {"type": "api", "method": "chat.postMessage", "args": {"channel": "C0000000001", "text": "hi"}}}]}}}`
	if _, err := k.PutBehaviorSet(ctx, "test", "grafana", []behaviors.File{{Name: "grafana.json", Data: []byte(set)}}); err != nil {
		t.Fatal(err)
	}
	run, err := k.CreateRun(ctx, "test", keeper.RunSpec{Name: `chat "herd" \ test`, BehaviorSet: "grafana", Koi: 10, TimeScale: 60,
		Target: state.Target{APIBase: p.URL() + "/api", Token: "xoxp-pond-{{.Index}}"}})
	if err != nil {
		t.Fatal(err)
	}

	var scrape string
	var families map[string]*dtoFamily
	wiretest.WaitFor(t, 20*time.Second, "/metrics to carry every series the dashboard uses", func() error {
		scrape = get(t, "http://"+k.HTTPAddr()+"/metrics")
		families = parseScrape(t, scrape)
		missing := missingFor(families, used, run.ID)
		if len(missing) == 0 && strings.Contains(scrape, `key="event:`) && strings.Contains(scrape, `outcome="server_error"`) {
			return nil
		}
		return fmt.Errorf("/metrics lacks series of run %s for %v:\n%s", run.ID, missing, scrape)
	})
	names := make([]string, 0, len(used))
	for m := range used {
		names = append(names, m)
	}
	sort.Strings(names)
	t.Logf("dashboard uses %d metrics, all in the scrape: %s", len(names), strings.Join(names, ", "))
	for _, line := range strings.Split(scrape, "\n") {
		if strings.HasPrefix(line, "koipond_run_koi{") || strings.HasPrefix(line, "koipond_run_latency_seconds{") && strings.Contains(line, `key="api:auth.test",quantile="0.95"`) {
			t.Logf("  %s", line)
		}
	}
	if want := `name="chat \"herd\" \\ test"`; !strings.Contains(scrape, want) {
		t.Errorf("run name not escaped as %s", want)
	}
}

// dtoFamily is one parsed metric family: label sets per series.
type dtoFamily struct {
	labels []map[string]string
}

// parseScrape parses a scrape strictly: prometheus/common's text parser,
// and no series (name and labels) twice.
func parseScrape(t *testing.T, scrape string) map[string]*dtoFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(scrape))
	if err != nil {
		t.Fatalf("/metrics is not valid Prometheus text: %v\n%s", err, scrape)
	}
	out := map[string]*dtoFamily{}
	for name, mf := range mfs {
		f := &dtoFamily{}
		seen := map[string]bool{}
		for _, m := range mf.GetMetric() {
			ls := map[string]string{}
			var id []string
			for _, lp := range m.GetLabel() {
				ls[lp.GetName()] = lp.GetValue()
				id = append(id, lp.GetName()+"="+lp.GetValue())
			}
			sort.Strings(id)
			key := strings.Join(id, ",")
			if seen[key] {
				t.Fatalf("/metrics has %s{%s} twice", name, key)
			}
			seen[key] = true
			f.labels = append(f.labels, ls)
		}
		out[name] = f
	}
	return out
}

// missingFor lists the used metrics absent from the scrape, or, for
// koipond_run_* metrics, without a series of run.
func missingFor(fams map[string]*dtoFamily, used map[string]bool, run string) []string {
	var out []string
	for m := range used {
		f := fams[m]
		ok := f != nil && len(f.labels) > 0
		if ok && strings.HasPrefix(m, "koipond_run_") {
			ok = false
			for _, ls := range f.labels {
				if ls["run"] == run {
					ok = true
				}
			}
		}
		if !ok {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out
}

// get fetches a URL and returns the body.
func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}
