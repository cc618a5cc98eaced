package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// clientFlags are the flags every keeper client command has.
type clientFlags struct {
	keeper string
	token  string
	json   bool
}

// addClientFlags registers --keeper and --json; the token comes from
// KOIPOND_TOKEN only (a flag would leave it in shell histories).
func addClientFlags(fs *flag.FlagSet) *clientFlags {
	cf := &clientFlags{token: os.Getenv("KOIPOND_TOKEN")}
	def := os.Getenv("KOIPOND_KEEPER")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	fs.StringVar(&cf.keeper, "keeper", def, "keeper `URL` (default from KOIPOND_KEEPER); the token comes from KOIPOND_TOKEN")
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
		return nil, fmt.Errorf("reaching the keeper at %s (KOIPOND_KEEPER): %w", cf.keeper, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the keeper's answer: %w", err)
	}
	if resp.StatusCode >= 300 && (accept == nil || !accept(resp.StatusCode)) {
		var eb struct {
			Error *apiError `json:"error"`
		}
		if json.Unmarshal(data, &eb) == nil && eb.Error != nil {
			eb.Error.Status = resp.StatusCode
			return nil, eb.Error
		}
		return nil, fmt.Errorf("keeper answered %s: %s", resp.Status, bytes.TrimSpace(data))
	}
	return data, nil
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

// needArgs checks the positional argument count.
func needArgs(fs *flag.FlagSet, n int, what string, stderr io.Writer) error {
	if fs.NArg() != n {
		fmt.Fprintf(stderr, "%s: want %s\n", fs.Name(), what)
		return errUsage
	}
	return nil
}
