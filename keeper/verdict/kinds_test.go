package verdict

import (
	"strings"
	"testing"

	"github.com/koipond/koipond/keeper/state"
)

// Keys of every kind koi report, the connection lifecycle's included,
// draw no "unknown metric kind" warning; a kind no koi reports does.
func TestMetricKindsKnowTheLifecycleKeys(t *testing.T) {
	for _, key := range []string{"api:auth.test", "http:GET /x", "ws:connect", "event:hello", "on_event:message",
		"behavior:chat", "boot:1", "formation:herd:1", "on_connect", "on_connect:2", "on_disconnect", "connect:open"} {
		kind, _, _ := strings.Cut(key, ":")
		if !KnownKind(kind) {
			t.Errorf("%s: kind %q unknown", key, kind)
		}
		if w := GuardrailWarnings("rules", []state.GuardrailRule{{Key: key}}); len(w) != 0 {
			t.Errorf("%s: %v", key, w)
		}
	}
	if w := GuardrailWarnings("rules", []state.GuardrailRule{{Key: "onconnect:1"}}); len(w) != 1 {
		t.Errorf("onconnect:1 drew %v, want one warning", w)
	}
}
