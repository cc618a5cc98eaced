package notify

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	long := strings.Repeat("é", 40000) // 80 KB, two bytes a rune
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"eleven char", 10, "eleven …"},
		{"ééééé", 8, "éé…"}, // 10 bytes: cut at 5, backed up to the rune start at 4
		{long, 2000, strings.Repeat("é", 998) + "…"},
	} {
		got := Clip(c.s, c.n)
		if got != c.want || len(got) > max(c.n, len(c.s)) || !utf8.ValidString(got) {
			t.Errorf("Clip(%.20q, %d) = %.30q (%d bytes), want %.30q", c.s, c.n, got, len(got), c.want)
		}
	}
}
