package api

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/koipond/koipond/keeper"
	"github.com/labstack/echo/v4"
)

// MaxExportUpload bounds an uploaded warehouse export: the whole request
// body, refused with 413 before a byte is read when Content-Length says
// more, and stopped at the limit while it is read otherwise. Bigger
// exports belong under the keeper's --warehouse-dir or on S3, which
// stream.
const MaxExportUpload = 32 << 20

// exportUploadRoute takes an export file as the request body.
const exportUploadRoute = "/api/v1/behavior-sets/generate/upload"

// maxUploadName bounds the file name an upload is known by.
const maxUploadName = 100

// checkUploadType accepts application/octet-stream (with parameters).
func checkUploadType(ct string) *keeper.Error {
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && mt == "application/octet-stream" {
		return nil
	}
	got := "none"
	if ct != "" {
		got = quoteInput(ct)
	}
	return &keeper.Error{Code: keeper.CodeUnsupportedMedia,
		Message: fmt.Sprintf("an export upload is the file itself with Content-Type: application/octet-stream (got %s)", got)}
}

// uploadQuery lists the query parameters of an upload: the generate
// request's fields but from, endpoint_url and region (an upload is its
// own source), and name, the file's name (its extension picks the
// format).
var uploadQuery = []string{"name", "format", "team", "client", "since", "until", "hourly", "timezone",
	"sequences", "min_frequency", "top", "skip_bad_rows", "sequenced_only", "sessions", "session_gap", "drop_transitions"}

// repeatedQuery lists the query parameters that may be given more than
// once, each value one item of the request's list.
var repeatedQuery = map[string]bool{"drop_transitions": true}

// postGenerateUpload generates from an export sent as the request body
// (at most MaxExportUpload bytes), with the options of POST
// /behavior-sets/generate as query parameters. The body is spooled to a
// temporary folder, read with the same parsers and limits as a local
// export, and removed when the answer is sent, whatever happened: nothing
// is kept. The output names the export by the upload's name only.
func (s *server) postGenerateUpload(c echo.Context) error {
	req, name, err := uploadRequest(c.QueryParams())
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "koipond-upload-")
	if err != nil {
		return fmt.Errorf("spooling the upload: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := spoolUpload(c, filepath.Join(dir, name)); err != nil {
		return err
	}
	req.From, req.uploadDir = name, dir
	opts, cleanup, err := s.generateOptions(req)
	if err != nil {
		return err
	}
	defer cleanup()
	return s.generate(c, opts, "file")
}

// spoolUpload copies the request body to p, refusing an empty body and
// one over MaxExportUpload (the edge's reader stops there).
func spoolUpload(c echo.Context, p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("spooling the upload: %w", err)
	}
	n, err := io.Copy(f, c.Request().Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &keeper.Error{Code: keeper.CodeTooLarge, Field: "file", Message: "the uploaded export is over the limit" + tooLargeHint(exportUploadRoute)}
	case bodyError(err) != nil:
		return bodyError(err)
	case err != nil:
		return invalid("file", "reading the upload: %v", err)
	case n == 0:
		return invalid("file", "the upload is empty: send the export file as the request body")
	}
	return nil
}

func mib(n int64) string { return strconv.FormatInt(n>>20, 10) + " MiB" }

// tooLargeHint says what to do about a body over a route's limit.
func tooLargeHint(route string) string {
	if route == exportUploadRoute {
		return fmt.Sprintf(": an uploaded export may be at most %s; put bigger exports under the keeper's --warehouse-dir or on S3 (s3://bucket/prefix), which are streamed", mib(MaxExportUpload))
	}
	return ""
}

// uploadRequest reads an upload's query parameters; unknown ones are
// refused, as unknown JSON fields are.
func uploadRequest(q map[string][]string) (generateRequest, string, error) {
	var req generateRequest
	known := map[string]bool{}
	for _, k := range uploadQuery {
		known[k] = true
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !known[k] {
			return req, "", invalid(quoteInput(k), "unknown query parameter %s (known: %s)", quoteInput(k), strings.Join(uploadQuery, ", "))
		}
		if len(q[k]) != 1 && !repeatedQuery[k] {
			return req, "", invalid(k, "give %s once", k)
		}
	}
	get := func(k string) string {
		if v := q[k]; len(v) == 1 {
			return v[0]
		}
		return ""
	}
	flag := func(k string) (bool, error) {
		switch get(k) {
		case "", "false", "0":
			return false, nil
		case "true", "1":
			return true, nil
		}
		return false, invalid(k, "%s must be true or false, not %s", k, quoteInput(get(k)))
	}
	var err error
	req.Format, req.Team, req.Client, req.Since, req.Until = get("format"), get("team"), get("client"), get("since"), get("until")
	req.Timezone, req.Sequences = get("timezone"), get("sequences")
	if req.Hourly, err = flag("hourly"); err != nil {
		return req, "", err
	}
	if req.SkipBadRows, err = flag("skip_bad_rows"); err != nil {
		return req, "", err
	}
	if req.SequencedOnly, err = flag("sequenced_only"); err != nil {
		return req, "", err
	}
	if req.Sessions, err = flag("sessions"); err != nil {
		return req, "", err
	}
	req.SessionGap, req.DropTransitions = get("session_gap"), q["drop_transitions"]
	if v := get("min_frequency"); v != "" {
		if req.MinFrequency, err = strconv.ParseFloat(v, 64); err != nil {
			return req, "", invalid("min_frequency", "%s is not a number", quoteInput(v))
		}
	}
	if v := get("top"); v != "" {
		if req.Top, err = strconv.Atoi(v); err != nil {
			return req, "", invalid("top", "%s is not a whole number", quoteInput(v))
		}
	}
	return req, uploadName(get("name")), nil
}

// uploadName makes a file name of the name an upload came with: its base
// name, letters, digits, '.', '-' and '_' only, at most maxUploadName
// bytes keeping the extension (which picks the format), never hidden or
// skipped as a marker ("_SUCCESS", ".crc"); "upload" when nothing is left.
func uploadName(name string) string {
	name = path.Base(strings.ReplaceAll(name, `\`, "/"))
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	name = strings.TrimLeft(b.String(), "._")
	if len(name) > maxUploadName {
		ext := path.Ext(name)
		if len(ext) > 20 {
			ext = ""
		}
		name = name[:maxUploadName-len(ext)] + ext
	}
	if name == "" || strings.HasPrefix(strings.ToLower(name), "readme") || strings.HasSuffix(strings.ToLower(name), ".md") ||
		strings.HasSuffix(strings.ToLower(name), "manifest") || strings.HasSuffix(strings.ToLower(name), ".crc") {
		name = "upload-" + name
	}
	return name
}

// exportEntry is one file or folder of the keeper's warehouse folder.
type exportEntry struct {
	Path string `json:"path"`
	Dir  bool   `json:"dir"`
	Size int64  `json:"size"`
}

// exportsReply lists what the generate page can read.
type exportsReply struct {
	// Local says whether local exports are on (--warehouse-dir).
	Local   bool          `json:"local"`
	Folder  string        `json:"folder,omitempty"`
	Exports []exportEntry `json:"exports"`
	// UploadLimit is MaxExportUpload.
	UploadLimit int64 `json:"upload_limit"`
}

// maxExportEntries bounds the listing.
const maxExportEntries = 200

// getExports lists the top level of the warehouse folder ("." first: the
// whole folder), skipping hidden and marker files and symlinks, as
// Generate does.
func (s *server) getExports(c echo.Context) error {
	out := exportsReply{Exports: []exportEntry{}, UploadLimit: MaxExportUpload}
	if s.cfg.WarehouseDir == "" {
		return c.JSON(http.StatusOK, out)
	}
	root, err := os.OpenRoot(s.cfg.WarehouseDir)
	if err != nil {
		return fmt.Errorf("the warehouse folder: %w", err)
	}
	defer root.Close()
	d, err := root.Open(".")
	if err != nil {
		return fmt.Errorf("the warehouse folder: %w", err)
	}
	defer d.Close()
	entries, err := d.ReadDir(maxExportEntries)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("listing the warehouse folder: %w", err)
	}
	out.Local, out.Folder = true, filepath.Base(s.cfg.WarehouseDir)
	out.Exports = append(out.Exports, exportEntry{Path: ".", Dir: true})
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, e := range entries {
		n := e.Name()
		ln := strings.ToLower(n)
		if strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_") || strings.HasPrefix(ln, "readme") || strings.HasSuffix(ln, ".md") ||
			e.Type()&os.ModeSymlink != 0 {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		out.Exports = append(out.Exports, exportEntry{Path: n, Dir: e.IsDir(), Size: info.Size()})
	}
	return c.JSON(http.StatusOK, out)
}

// refuseTakenName answers 409 when a request that says overwrite: false
// names an existing behavior set.
func (s *server) refuseTakenName(req behaviorSetRequest) error {
	if req.Overwrite == nil || *req.Overwrite {
		return nil
	}
	if b := s.k.State().LatestBehaviorSet(nil, req.Name); b != nil {
		return &keeper.Error{Code: keeper.CodeConflict, Field: "name",
			Message: fmt.Sprintf("a behavior set named %s exists (v%d): send overwrite: true to save this as v%d, or pick another name", quoteInput(req.Name), b.Version, b.Version+1)}
	}
	return nil
}
