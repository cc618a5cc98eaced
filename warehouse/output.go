package warehouse

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Encode writes the result as a behavior file in standard JSON (jq and any
// JSON tool read it): a "generated" object saying where it comes from
// (Provenance), then {"behaviors": {method: {"frequency": f}}} with methods
// most frequent first (and "timezone" plus "hourly" profiles when asked).
// The behavior-set loader accepts and ignores "generated".
func (r *Result) Encode(w io.Writer) error {
	prov, err := json.MarshalIndent(r.Provenance(), "  ", "  ")
	if err != nil {
		return fmt.Errorf("encoding the provenance: %w", err)
	}
	var b bytes.Buffer
	b.WriteString("{\n  \"generated\": ")
	b.Write(prov)
	b.WriteString(",\n")
	if r.Timezone != nil {
		fmt.Fprintf(&b, "  \"timezone\": %s,\n", jsonString(r.Timezone.String()))
	}
	if r.Sessions != nil {
		if err := encodeSessionBehaviors(&b, r.Sessions.behaviors); err != nil {
			return err
		}
		b.WriteString("}\n")
		_, err = w.Write(b.Bytes())
		return err
	}
	b.WriteString("  \"behaviors\": {")
	for i, m := range r.Methods {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "\n    %s: { \"frequency\": %s", jsonString(m.Name), formatFloat(m.Frequency))
		if m.Hourly != nil {
			b.WriteString(", \"hourly\": [")
			for h, v := range m.Hourly {
				if h > 0 {
					b.WriteString(", ")
				}
				b.WriteString(strconv.FormatFloat(v, 'f', 4, 64))
			}
			b.WriteString("]")
		}
		b.WriteString(" }")
	}
	if len(r.Methods) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("}\n}\n")
	_, err = w.Write(b.Bytes())
	return err
}

// Provenance is the "generated" object of an output file: where the
// frequencies come from and what was left out, as plain JSON fields.
type Provenance struct {
	By          string `json:"by"`
	Tool        string `json:"tool,omitempty"`
	GeneratedAt string `json:"generated_at"`
	// Frequency says what the numbers mean.
	Frequency string         `json:"frequency"`
	Source    string         `json:"source"`
	Parts     int            `json:"parts"`
	Formats   map[string]int `json:"formats"`
	BytesRead int64          `json:"bytes_read"`
	Shape     Shape          `json:"shape"`
	// Rows counts rows; its examples are left out (they quote the export).
	Rows    Rows     `json:"rows"`
	Filters []string `json:"filters,omitempty"`
	// Window is the time range of the used rows (raw call logs).
	Window            *Window `json:"window,omitempty"`
	ActiveUserMinutes int64   `json:"active_user_minutes"`
	Users             int64   `json:"users,omitempty"`
	TotalCalls        int64   `json:"total_calls"`
	// CallsPerKoiMinute is the sum of the written frequencies.
	CallsPerKoiMinute float64 `json:"calls_per_koi_minute"`
	Written           int     `json:"methods_written"`
	// Dropped summarises the methods left out, when any.
	Dropped *DropSummary `json:"dropped,omitempty"`
	// Hourly says how the hourly profiles read, when written.
	Hourly   string    `json:"hourly,omitempty"`
	Coverage *Coverage `json:"coverage,omitempty"`
	// Sessions is the learned call order, when the behaviors written are
	// sessions (Options.Sessions): the per-method frequencies are then
	// in Counts and Frequencies only.
	Sessions *Sessions `json:"sessions,omitempty"`
	// Frequencies are the methods' frequencies when the behaviors
	// written are sessions.
	Frequencies map[string]float64 `json:"frequencies,omitempty"`
	// Counts holds each written method's numerator and call volume.
	Counts map[string]MethodCounts `json:"counts"`
}

// Window is a time range.
type Window struct {
	First   string  `json:"first"`
	Last    string  `json:"last"`
	Minutes float64 `json:"minutes"`
}

// DropSummary tells what the dropped methods weighed.
type DropSummary struct {
	Count int `json:"count"`
	// Names of the dropped methods, most frequent first.
	Names []string `json:"names"`
	// Why lists them by reason (the Drop constants).
	Why   map[string][]string `json:"why"`
	Calls int64               `json:"calls"`
	// Share of the export's calls the dropped methods made.
	Share float64 `json:"share"`
}

// MethodCounts are one method's counts.
type MethodCounts struct {
	UserMinutes int64 `json:"user_minutes"`
	Calls       int64 `json:"calls"`
}

// Provenance returns the result's "generated" object.
func (r *Result) Provenance() *Provenance {
	p := &Provenance{By: "koipond warehouse generate", Tool: r.Tool, GeneratedAt: r.GeneratedAt.UTC().Format(time.RFC3339),
		Frequency: "share of active user-minutes in which the user called the method at least once: the probability that one koi calls it in a given minute",
		Source:    r.Source, Parts: r.Objects, Formats: r.Formats, BytesRead: r.Bytes, Shape: r.Shape, Rows: r.Rows, Filters: r.Filters,
		ActiveUserMinutes: r.ActiveUserMinutes, Users: r.Users, TotalCalls: r.TotalCalls,
		CallsPerKoiMinute: roundTo(r.perMinute(), 6), Written: len(r.Methods), Coverage: r.Coverage,
		Counts: make(map[string]MethodCounts, len(r.Methods))}
	p.Rows.Examples = nil
	if p.Formats == nil {
		p.Formats = map[string]int{}
	}
	if !r.First.IsZero() {
		p.Window = &Window{First: r.First.UTC().Format(time.RFC3339), Last: r.Last.UTC().Format(time.RFC3339), Minutes: roundTo(r.Last.Sub(r.First).Minutes(), 2)}
	}
	if len(r.Dropped) > 0 {
		p.Dropped = &DropSummary{Count: len(r.Dropped), Names: r.Dropped, Why: r.DroppedWhy, Calls: r.DroppedCalls, Share: roundTo(r.DroppedShare, 6)}
	}
	if r.Timezone != nil {
		p.Hourly = fmt.Sprintf("24 multipliers of the frequency per hour of day in %s (mean 1)", r.Timezone)
	}
	for _, m := range r.Methods {
		p.Counts[m.Name] = MethodCounts{UserMinutes: m.UserMinutes, Calls: m.Calls}
	}
	if r.Sessions != nil {
		p.Sessions = r.Sessions
		p.Frequencies = make(map[string]float64, len(r.Methods))
		for _, m := range r.Methods {
			p.Frequencies[m.Name] = roundTo(m.Frequency, 6)
		}
		p.CallsPerKoiMinute = 0
		for _, b := range r.Sessions.behaviors {
			p.CallsPerKoiMinute += b.frequency
		}
		p.CallsPerKoiMinute = roundTo(p.CallsPerKoiMinute, 6)
		p.Written = len(r.Sessions.behaviors)
	}
	return p
}

func roundTo(f float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(f*p) / p
}

// DropWords summarises the dropped methods in one line for people:
// "3 methods (12.5% of calls): ping, typing, users.info (no sequence)".
// It is empty when nothing was dropped.
func (r *Result) DropWords(maxNames int) string {
	if len(r.Dropped) == 0 {
		return ""
	}
	reasons := map[string]string{DropMinFrequency: "below --min-frequency", DropNoSequence: "no sequence", DropTop: "past --top"}
	keys := make([]string, 0, len(r.DroppedWhy))
	for k := range r.DroppedWhy {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	shown := 0
	for _, k := range keys {
		names := r.DroppedWhy[k]
		n := min(len(names), max(0, maxNames-shown))
		list := strings.Join(names[:n], ", ")
		if n < len(names) {
			if list != "" {
				list += ", "
			}
			list += fmt.Sprintf("%d more", len(names)-n)
		}
		shown += n
		parts = append(parts, fmt.Sprintf("%s (%s)", list, cmp.Or(reasons[k], k)))
	}
	return fmt.Sprintf("%s (%.1f%% of calls): %s", plural(len(r.Dropped), "method"), 100*r.DroppedShare, strings.Join(parts, "; "))
}

func (r *Result) perMinute() float64 {
	s := 0.0
	for _, m := range r.Methods {
		s += m.Frequency
	}
	return s
}

// WriteFile writes Encode's output to path atomically: a temporary file in
// the same folder, synced, then renamed over path. On failure path is
// untouched and the temporary file removed.
func (r *Result) WriteFile(path string) (err error) {
	var b bytes.Buffer
	if err := r.Encode(&b); err != nil {
		return err
	}
	return writeAtomic(path, b.Bytes())
}

func writeAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// formatFloat writes a frequency with 6 significant digits, never in
// exponent form (0.000001234 rather than 1.234e-06), for people to read.
func formatFloat(f float64) string {
	s := strconv.FormatFloat(f, 'g', 6, 64)
	if strings.ContainsAny(s, "e") {
		p, _ := strconv.ParseFloat(s, 64)
		s = strconv.FormatFloat(p, 'f', -1, 64)
	}
	return s
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// commas writes 1234567 as 1,234,567.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// byReason writes counts as "bad timestamp: 3, missing value: 1", largest
// first.
func byReason(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %s", k, commas(m[k]))
	}
	return strings.Join(parts, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return commas(int64(n)) + " " + what + "s"
}
