package ui_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/koipond/koipond/ui"
)

// Handler serves the page and its modules with types browsers accept for
// module scripts, and nothing outside the embedded folder.
func TestHandlerServesFilesWithTypes(t *testing.T) {
	srv := httptest.NewServer(ui.Handler())
	defer srv.Close()
	for _, tc := range []struct {
		path, method string
		status       int
		ctype        string // prefix; empty: not checked
		contains     string
	}{
		{"/", "GET", 200, "text/html", `<script type="module" src="app.js">`},   // the page
		{"/index.html", "GET", 200, "text/html", "koipond"},                     // the page by its name too
		{"/app.js", "GET", 200, "text/javascript", "import"},                    // the entry module
		{"/lib.js", "GET", 200, "text/javascript", "export async function api"}, // a module it imports
		{"/chart.js", "GET", 200, "text/javascript", "export class Chart"},      // our SVG charts
		{"/runs.js", "GET", 200, "text/javascript", "export function mount"},    // a page
		{"/style.css", "GET", 200, "text/css", ".big"},                          // the stylesheet
		{"/favicon.svg", "GET", 200, "image/svg+xml", "<svg"},                   // the icon
		{"/nope.js", "GET", 404, "", ""},                                        // absent file
		{"/../ui.go", "GET", 404, "", ""},                                       // no escape from static/
		{"/ui.go", "GET", 404, "", ""},                                          // Go sources are not served
		{"/", "POST", 405, "", ""},                                              // read-only
		{"/app.js", "HEAD", 200, "text/javascript", ""},                         // HEAD works
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); tc.ctype != "" && !strings.HasPrefix(ct, tc.ctype) {
			t.Errorf("%s %s: Content-Type %q, want %s", tc.method, tc.path, ct, tc.ctype)
		}
		if tc.contains != "" && !strings.Contains(string(body), tc.contains) {
			t.Errorf("%s %s: body lacks %q", tc.method, tc.path, tc.contains)
		}
		if tc.status == 200 && resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s: no nosniff header", tc.method, tc.path)
		}
	}
}

// Every module index.html and the modules import is embedded: a missing
// file would only show as a blank page in a browser.
func TestEveryImportedModuleIsServed(t *testing.T) {
	srv := httptest.NewServer(ui.Handler())
	defer srv.Close()
	seen := map[string]bool{}
	queue := []string{"app.js"}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] {
			continue
		}
		seen[name] = true
		resp, err := http.Get(srv.URL + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: HTTP %d", name, resp.StatusCode)
			continue
		}
		for _, line := range strings.Split(string(body), "\n") {
			if i := strings.Index(line, "from './"); i >= 0 && strings.HasPrefix(strings.TrimSpace(line), "import") || strings.HasPrefix(strings.TrimSpace(line), "} from './") {
				j := strings.Index(line, "from './")
				rest := line[j+len("from './"):]
				queue = append(queue, rest[:strings.IndexByte(rest, '\'')])
			}
		}
	}
	for _, want := range []string{"lib.js", "chart.js", "editor.js", "runs.js", "run.js", "formations.js", "behaviors.js", "schools.js", "guard.js"} {
		if !seen[want] {
			t.Errorf("%s is not imported from app.js", want)
		}
	}
}
