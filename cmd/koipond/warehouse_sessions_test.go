package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --sessions on the shipped sample export writes session behaviors that
// `behaviors validate` accepts beside the sequences file, and the summary
// gives sessions, users, transitions and coverage.
func TestWarehouseGenerateSessions(t *testing.T) {
	out := filepath.Join(t.TempDir(), "sessions.json")
	seqs := "../../examples/slack/sequences.json"
	_, errOut, code := runCmd(t, "warehouse", "generate", "--from", sampleExport, "--sequences", seqs, "--sequenced-only",
		"--sessions", "--session-gap", "20m", "--drop-transition", "conversations.history>conversations.mark", "--out", out, "--quiet")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	for _, w := range []string{"koipond warehouse: sessions (gap 20m0s): ", " users, ", " transitions learned (", " session behaviors written; coverage "} {
		if !strings.Contains(errOut, w) {
			t.Errorf("the summary lacks %q:\n%s", w, errOut)
		}
	}
	if strings.Contains(errOut, "have no sequence, so the sessions call them") {
		t.Errorf("--sequenced-only, yet methods without a sequence are called:\n%s", errOut)
	}
	stdout, errOut, code := runCmd(t, "behaviors", "validate", out, seqs)
	if code != 0 {
		t.Fatalf("the generated sessions do not validate beside %s: exit %d\n%s%s", seqs, code, stdout, errOut)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"session:`) || !strings.Contains(string(b), `"choose"`) {
		t.Errorf("no session behaviors with choose steps in %s", out)
	}
}

// Sessions need a raw call log: an aggregated export is refused with the
// reason, and --out is not written; a malformed --drop-transition is a
// usage error naming the value.
func TestWarehouseGenerateSessionsRefused(t *testing.T) {
	dir := t.TempDir()
	agg := filepath.Join(dir, "agg.csv")
	if err := os.WriteFile(agg, []byte("method,user_minutes,active_user_minutes\nchat.postMessage,10,100\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.json")
	_, errOut, code := runCmd(t, "warehouse", "generate", "--from", agg, "--sessions", "--out", out, "--quiet")
	if code == 0 || !strings.Contains(errOut, "--sessions needs a raw call log") {
		t.Errorf("exit %d, want a refusal saying why:\n%s", code, errOut)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s was written (%v)", out, err)
	}
	_, errOut, code = runCmd(t, "warehouse", "generate", "--from", sampleExport, "--sessions", "--drop-transition", "a-b", "--out", out, "--quiet")
	if code == 0 || !strings.Contains(errOut, `"a-b" is not written from>to`) {
		t.Errorf("exit %d, want the bad --drop-transition named:\n%s", code, errOut)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s was written (%v)", out, err)
	}
}
