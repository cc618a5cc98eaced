package metrics

import (
	"fmt"
	"hash/fnv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxKeyLen is the longest metric key, in bytes. Keys become Prometheus
// labels (up to 14 series per key on every /metrics scrape), log fields,
// report rows and UI labels, and the keeper keeps up to 500 per run: a
// school that sent megabyte keys would make each scrape gigabytes. Real
// keys are a prefix and a name ("api:conversations.history",
// "formation:<name>#<launch id>:3"), far shorter; a longer one is made to
// fit by CleanKey.
const MaxKeyLen = 512

// KeyProblem says what makes key unusable as a metric key, or "" when it
// is fine: a key is 1 to MaxKeyLen bytes of UTF-8 without control
// characters.
func KeyProblem(key string) string {
	switch {
	case key == "":
		return "empty"
	case len(key) > MaxKeyLen:
		return fmt.Sprintf("%d bytes long (at most %d)", len(key), MaxKeyLen)
	}
	for i, r := range key {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(key[i:], "\uFFFD"):
			return fmt.Sprintf("not UTF-8 at byte %d", i)
		case unicode.IsControl(r):
			return fmt.Sprintf("control character %U at byte %d", r, i)
		}
	}
	return ""
}

// cleanKeyRoom is what CleanKey leaves free below MaxKeyLen when it has
// to change a key, so that a step's key ("<key>:12") still fits.
const cleanKeyRoom = 32

// CleanKey returns key when KeyProblem finds nothing, else a key that
// passes it and stays distinct: invalid bytes become U+FFFD and control
// characters '?', the result is cut to fit, and "~" and 16 hex digits of
// a hash of the original key are appended. Cheap for a good key.
func CleanKey(key string) string {
	if KeyProblem(key) == "" {
		return key
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	suffix := fmt.Sprintf("~%016x", h.Sum64())
	s := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(key, "\uFFFD"))
	limit := MaxKeyLen - cleanKeyRoom - len(suffix)
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s + suffix
}

// CheckKeys returns an error wrapping ErrMalformed naming the first key
// (in key order) that KeyProblem refuses, quoting at most its first 64
// characters; nil when every key is fine. A receiver of snapshots from
// the network calls it after UnmarshalBinary, which checks only the
// encoding's structure (so that the keeper's own encoded buckets, keyed by
// two-byte ids, decode too).
func (s *Snapshot) CheckKeys() error {
	var bad string
	found := false
	for key := range s.Series {
		if KeyProblem(key) != "" && (!found || key < bad) {
			bad, found = key, true
		}
	}
	if !found {
		return nil
	}
	return fmt.Errorf("%w: series key %.64q: %s", ErrMalformed, bad, KeyProblem(bad))
}

// CleanKeys renames every key KeyProblem refuses to its CleanKey, merging
// it into a series already under that name, and returns how many it
// renamed. For snapshots stored before keys were bounded: what they
// counted is kept under keys a receiver accepts.
func (s *Snapshot) CleanKeys() int {
	var bad []string
	for key := range s.Series {
		if KeyProblem(key) != "" {
			bad = append(bad, key)
		}
	}
	for _, key := range bad {
		ss := s.Series[key]
		delete(s.Series, key)
		nk := CleanKey(key)
		if have := s.Series[nk]; have != nil {
			if ss != nil {
				// Fails only for a series with samples but no
				// sketch, which UnmarshalBinary never returns.
				_ = have.merge(ss)
			}
			continue
		}
		s.Series[nk] = ss
	}
	return len(bad)
}
