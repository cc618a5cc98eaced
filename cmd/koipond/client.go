package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// clientFlags are the flags every keeper client command has.
type clientFlags struct {
	keeper string
	token  string
	json   bool
}

// addClientFlags registers --keeper and --json; the token comes from
// KOIPOND_TOKEN only (a flag would leave it in shell histories).
func addClientFlags(fs *pflag.FlagSet) *clientFlags {
	cf := &clientFlags{token: os.Getenv("KOIPOND_TOKEN")}
	def := os.Getenv("KOIPOND_KEEPER")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	fs.StringVar(&cf.keeper, "keeper", def, "keeper API `URL` (env KOIPOND_KEEPER)")
	fs.BoolVar(&cf.json, "json", false, "print the keeper's answer as JSON")
	return cf
}

// apiError is the keeper's error body.
type apiError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field"`
}

func (e *apiError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("keeper refused (%s): %s: %s", e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("keeper refused (%s): %s", e.Code, e.Message)
}

// call sends a JSON request to the keeper and decodes the JSON answer into
// out (raw, when out is *json.RawMessage).
func (cf *clientFlags) call(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding the request: %w", err)
		}
		body = b
	}
	data, err := cf.send(ctx, method, path, body, nil, nil)
	if err != nil || out == nil {
		return err
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding the keeper's answer: %w", err)
	}
	return nil
}

// send makes one request to the keeper and returns the answer's body. The
// bearer token goes along unless header is given (a signed call carries
// its own credentials). An answer of 300 or more that accept does not take
// becomes the keeper's error (an *apiError when it sent one).
func (cf *clientFlags) send(ctx context.Context, method, path string, body []byte, header http.Header, accept func(status int) bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(cf.keeper, "/")+path, rd)
	if err != nil {
		return nil, fmt.Errorf("keeper URL: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	if cf.token != "" && header == nil {
		req.Header.Set("Authorization", "Bearer "+cf.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if unreachable(err) {
			return nil, &unavailableError{what: "keeper at " + cf.keeper, state: "unreachable", err: err}
		}
		return nil, fmt.Errorf("reaching the keeper at %s (KOIPOND_KEEPER): %w", cf.keeper, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		if unreachable(err) {
			return nil, &unavailableError{what: "keeper at " + cf.keeper, state: "unreachable", err: err}
		}
		return nil, fmt.Errorf("reading the keeper's answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		// The keeper (or a proxy in front of it) is not serving: koipond
		// is unavailable, the command did not fail on its merits.
		return nil, &unavailableError{what: "keeper at " + cf.keeper, state: "unavailable", err: answerError(resp, data)}
	}
	if resp.StatusCode >= 300 && (accept == nil || !accept(resp.StatusCode)) {
		return nil, answerError(resp, data)
	}
	return data, nil
}

// answerError is the keeper's error answer: an *apiError when it sent one,
// else the status and (at most 512 bytes of) the body.
func answerError(resp *http.Response, data []byte) error {
	var eb struct {
		Error *apiError `json:"error"`
	}
	if json.Unmarshal(data, &eb) == nil && eb.Error != nil {
		eb.Error.Status = resp.StatusCode
		return eb.Error
	}
	data = bytes.TrimSpace(data)
	if len(data) > 512 {
		data = append(data[:512:512], "…"...)
	}
	return fmt.Errorf("keeper answered %s: %s", resp.Status, data)
}

// show prints the answer as indented JSON with --json, else calls human.
func (cf *clientFlags) show(stdout io.Writer, v any, human func()) error {
	if cf.json {
		return writeJSON(stdout, v)
	}
	human()
	return nil
}

// keyValues parses repeated k=v flags.
type keyValues map[string]string

func (kv keyValues) String() string { return "" }

func (kv keyValues) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not key=value", s)
	}
	kv[k] = v
	return nil
}
