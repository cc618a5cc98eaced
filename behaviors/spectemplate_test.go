package behaviors

import (
	"strings"
	"testing"
)

// Run spec templates render per koi, and the ones that could take a
// school's CPU or memory (they come over the network) are refused.
func TestSpecTemplates(t *testing.T) {
	good := map[string]string{
		"Bearer {{.Token}}":                            "Bearer tok",
		"koi-{{.Index}}":                               "koi-7",
		`{{printf "%06d" .Index}}`:                     "000007",
		"{{if .UserID}}{{.UserID}}{{else}}anon{{end}}": "U7",
		"plain": "plain",
	}
	for src, want := range good {
		st, err := ParseSpecTemplate("X-A", src)
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		if got, err := st.Render(SpecData{Index: 7, Token: "tok", UserID: "U7"}); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", src, got, err, want)
		}
	}
	bad := map[string]string{
		"{{.Token":                                         "bad template",
		"{{.Password}}":                                    "{{.Index}}, {{.Token}} and {{.UserID}}",
		"{{range 100000000000}}{{end}}":                    "range is not allowed",
		`{{printf "%999999999d" 1}}`:                       "widths and precisions are at most 999",
		`{{printf "%.99999f" 1.0}}`:                        "widths and precisions are at most 999",
		`{{printf "%*d" 1000000000 1}}`:                    "widths and precisions are at most 999",
		`{{define "x"}}{{end}}`:                            "define and block are not allowed",
		`{{printf "%999d%999d%999d%999d%999d" 1 2 3 4 5}}`: "renders more than 4096 bytes",
		strings.Repeat("x", 5000):                          "renders more than 4096 bytes",
	}
	for src, want := range bad {
		if _, err := ParseSpecTemplate("X-A", src); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.40s: err = %v, want %q", src, err, want)
		}
	}
}

// A bounded template over any data (a trigger call's payload) stops at
// its output bound, however large the values it prints.
func TestBoundedTemplateOutput(t *testing.T) {
	bt, err := ParseBoundedTemplate("name", "trigger template", 64<<10, strings.Repeat("{{.v}}", 100))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := bt.Execute(map[string]any{"v": "ok"}); err != nil || out != strings.Repeat("ok", 100) {
		t.Errorf("small values: %q, %v", out, err)
	}
	out, err := bt.Execute(map[string]any{"v": strings.Repeat("x", 60<<10)}) // 6 MB if unbounded
	if err == nil || !strings.Contains(err.Error(), "renders more than 65536 bytes") || out != "" {
		t.Errorf("large values: %d bytes, %v; want refused past 65536 bytes", len(out), err)
	}
	if _, err := ParseBoundedTemplate("name", "trigger template", 64<<10, "{{range .v}}{{end}}"); err == nil || err.Error() != "range is not allowed in a trigger template" {
		t.Errorf("range: %v", err)
	}
}
