package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/warehouse"
	"github.com/labstack/echo/v4"
)

// generateRequest asks the keeper to turn a warehouse usage export into a
// frequencies file (the UI's "generate from warehouse export"). The result
// is a preview: save it with POST /behavior-sets beside its sequences.
type generateRequest struct {
	// From is s3://bucket/prefix, or a path under Config.WarehouseDir.
	From     string `json:"from"`
	Format   string `json:"format,omitempty"`
	Team     string `json:"team,omitempty"`
	Client   string `json:"client,omitempty"`
	Since    string `json:"since,omitempty"` // RFC 3339
	Until    string `json:"until,omitempty"`
	Hourly   bool   `json:"hourly,omitempty"`
	Timezone string `json:"timezone,omitempty"`
	// Sequences names a stored behavior set (hash or name) whose sequences
	// the coverage report compares against.
	Sequences     string  `json:"sequences,omitempty"`
	MinFrequency  float64 `json:"min_frequency,omitempty"`
	Top           int     `json:"top,omitempty"`
	SkipBadRows   bool    `json:"skip_bad_rows,omitempty"`
	EndpointURL   string  `json:"endpoint_url,omitempty"`
	Region        string  `json:"region,omitempty"`
	SequencedOnly bool    `json:"sequenced_only,omitempty"`
	// Sessions learns call order (warehouse.Options.Sessions): the
	// result gets the learned transitions, the file the sequences built
	// from them. SessionGap is a Go duration ("30m"; default
	// warehouse.DefaultSessionGap); DropTransitions leaves out learned
	// transitions, each "from>to".
	Sessions        bool     `json:"sessions,omitempty"`
	SessionGap      string   `json:"session_gap,omitempty"`
	DropTransitions []string `json:"drop_transitions,omitempty"`

	// uploadDir, set only by an upload, is the temporary folder holding
	// the uploaded file From.
	uploadDir string
}

// generateReply is the preview: the file to save and what it was made of.
type generateReply struct {
	File   fileJSON          `json:"file"`
	Result *warehouse.Result `json:"result"`
}

// postGenerate runs warehouse.Generate. With Accept: text/event-stream it
// streams `progress` events (rows, bytes, rows/s, phase) then one `result`
// (or `error`) event, for long exports; otherwise it answers once.
func (s *server) postGenerate(c echo.Context) error {
	var req generateRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	opts, cleanup, err := s.generateOptions(req)
	if err != nil {
		return err
	}
	defer cleanup()
	return s.generate(c, opts, "from")
}

// generate runs opts and answers: once, or as a stream of events. field
// names the request field an export error points at.
func (s *server) generate(c echo.Context, opts warehouse.Options, field string) error {
	opts.Tool = keeperTool()
	ctx := c.Request().Context()
	stream := strings.Contains(c.Request().Header.Get("Accept"), "text/event-stream")
	if !stream {
		res, err := warehouse.Generate(ctx, opts, nil)
		if err != nil {
			return invalid(field, "%v", err)
		}
		reply, err := previewOf(res)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, reply)
	}
	w := c.Response()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	send := func(event string, v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
		w.Flush()
	}
	res, err := warehouse.Generate(ctx, opts, func(p warehouse.Progress) {
		send("progress", map[string]any{"phase": p.Phase, "object": p.Object, "objects": p.Objects, "rows": p.Rows,
			"bytes": p.Bytes, "rows_per_sec": p.RowsPerSec, "elapsed_ms": p.Elapsed.Milliseconds()})
	})
	if err != nil {
		send("error", map[string]any{"error": map[string]string{"code": keeper.CodeInvalid, "message": clipMessage(err.Error()), "field": field}})
		return nil
	}
	reply, err := previewOf(res)
	if err != nil {
		send("error", map[string]any{"error": map[string]string{"code": "internal", "message": err.Error()}})
		return nil
	}
	send("result", reply)
	return nil
}

func previewOf(res *warehouse.Result) (*generateReply, error) {
	var b bytes.Buffer
	if err := res.Encode(&b); err != nil {
		return nil, err
	}
	return &generateReply{File: fileJSON{Name: "frequencies.json", Content: b.String()}, Result: res}, nil
}

// generateOptions checks a request. Local paths are read only inside
// Config.WarehouseDir: the API must not become a way to read the keeper's
// file system.
func (s *server) generateOptions(req generateRequest) (warehouse.Options, func(), error) {
	nothing := func() {}
	opts := warehouse.Options{From: req.From, Format: warehouse.Format(req.Format), Hourly: req.Hourly,
		MinFrequency: req.MinFrequency, Top: req.Top, SkipBadRows: req.SkipBadRows, EndpointURL: req.EndpointURL,
		Region: req.Region, SequencedOnly: req.SequencedOnly, ProgressEvery: 500 * time.Millisecond}
	switch {
	case req.From == "":
		return opts, nothing, invalid("from", "give s3://bucket/prefix or a path under the keeper's warehouse folder")
	case req.uploadDir != "":
		opts.Root, opts.SourceName = req.uploadDir, req.From
	case strings.HasPrefix(req.From, "s3://"):
	default:
		if s.cfg.WarehouseDir == "" {
			return opts, nothing, invalid("from", "local exports are off: start the keeper with --warehouse-dir to allow paths under it, upload the file, or use s3://")
		}
		// Lexically first, for a clear message; then Generate opens the
		// path through os.Root, so a symlink leading out of the folder
		// is refused too, and no file outside it is ever opened.
		root, err := filepath.Abs(s.cfg.WarehouseDir)
		if err != nil {
			return opts, nothing, fmt.Errorf("the warehouse folder: %w", err)
		}
		p := req.From
		if filepath.IsAbs(p) {
			rel, err := filepath.Rel(root, filepath.Clean(p))
			if err != nil {
				rel = ".."
			}
			p = rel
		}
		if p = filepath.Clean(p); !filepath.IsLocal(p) && p != "." {
			return opts, nothing, invalid("from", "%q is outside the warehouse folder %s", req.From, root)
		}
		opts.Root, opts.From = root, p
		// Named by its path in the folder: the keeper's own folders
		// stay out of the file and the preview.
		opts.SourceName = filepath.ToSlash(p)
		if p == "." {
			opts.SourceName = filepath.Base(root)
		}
	}
	if req.Team != "" {
		opts.Teams = []string{req.Team}
	}
	if req.Client != "" {
		opts.Clients = []string{req.Client}
	}
	for _, t := range []struct {
		field, v string
		dst      *time.Time
	}{{"since", req.Since, &opts.Since}, {"until", req.Until, &opts.Until}} {
		if t.v == "" {
			continue
		}
		tt, err := time.Parse(time.RFC3339, t.v)
		if err != nil {
			return opts, nothing, invalid(t.field, "%q is not an RFC 3339 time", t.v)
		}
		*t.dst = tt
	}
	if req.Timezone != "" {
		loc, err := time.LoadLocation(req.Timezone)
		if err != nil {
			return opts, nothing, invalid("timezone", "unknown time zone %q", req.Timezone)
		}
		opts.Timezone = loc
	}
	if err := sessionOptions(req, &opts); err != nil {
		return opts, nothing, err
	}
	cleanup := nothing
	if req.Sequences != "" {
		path, label, done, err := s.sequencesFile(req.Sequences)
		if err != nil {
			return opts, nothing, err
		}
		opts.Sequences, opts.SequencesName, cleanup = path, label, done
	}
	if errs := opts.Validate(); len(errs) > 0 {
		cleanup()
		return opts, nothing, invalid("", "%v", errs[0])
	}
	return opts, cleanup, nil
}

// sequencesFile writes the file of a stored set that holds its sequences
// to a temporary file, for the coverage report, and names it for the
// output ("slack v2").
func (s *server) sequencesFile(ref string) (string, string, func(), error) {
	r := s.k.State()
	set := r.BehaviorSet(nil, ref)
	if set == nil {
		set = r.LatestBehaviorSet(nil, ref)
	}
	if set == nil {
		return "", "", nil, notFound("sequences", "no behavior set %q", ref)
	}
	for _, f := range set.Files {
		s, _ := behaviors.Parse(behaviors.File{Name: f.Name, Data: []byte(f.Content)})
		hasSteps := false
		if s != nil {
			for _, b := range s.Behaviors {
				hasSteps = hasSteps || b.Sequence != nil
			}
		}
		if !hasSteps && !strings.Contains(f.Content, `"steps"`) {
			continue
		}
		dir, err := os.MkdirTemp("", "koipond-sequences-")
		if err != nil {
			return "", "", nil, err
		}
		p := filepath.Join(dir, filepath.Base(f.Name))
		if err := os.WriteFile(p, []byte(f.Content), 0o600); err != nil {
			os.RemoveAll(dir)
			return "", "", nil, err
		}
		return p, fmt.Sprintf("%s v%d (%s)", set.Name, set.Version, filepath.Base(f.Name)), func() { os.RemoveAll(dir) }, nil
	}
	return "", "", nil, invalid("sequences", "behavior set %q has no file with sequences", ref)
}

// keeperTool names the keeper and its module version for the provenance
// of generated files.
func keeperTool() string {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	return "koipond keeper " + v
}
