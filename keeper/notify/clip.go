package notify

import "unicode/utf8"

// Clip shortens s to at most n bytes (so at most n characters, Slack's
// limits), ending in "…" when cut, never splitting a rune; it is linear
// in n, whatever the length of s. It is the one clip of the keeper's
// packages: notices, the keeper's error and quarantine texts and the
// API's error messages all bound what they quote with it.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return Cut(s, max(n-len("…"), 0)) + "…" // room for the ellipsis
}

// Cut is Clip without the ellipsis: s cut to at most n bytes, backed up
// to a rune start, for bounds where the cut needs no mark.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
