package koi_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/koipond/koipond/koi"
)

func TestDecodeEvent(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		typ     string
		sentAt  bool
		wantErr bool
	}{
		{"message with send time", `{"type":"message","sent_at":1764000000123.456,"text":"hi"}`, "message", true, false},
		{"send time as a string", `{"type":"pong","sent_at":"1764000000123"}`, "pong", true, false},
		{"implausible send time ignored", `{"type":"x","sent_at":12}`, "x", false, false},
		{"no type", `{"a":1}`, "", false, false},
		{"array", `[1,2]`, "", false, false},
		{"not JSON", `hello`, "", false, true},
		{"broken JSON", `{"type":`, "", false, true},
		{"trailing data", `{"type":"a"} {"type":"b"}`, "", false, true},
		{"empty", ``, "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := koi.DecodeEvent([]byte(tt.raw), "sent_at")
			if tt.wantErr != (err != nil) || (err != nil && !errors.Is(err, koi.ErrBadEvent)) {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if ev.Type != tt.typ || ev.SentAt.IsZero() == tt.sentAt {
				t.Errorf("event = %+v", ev)
			}
		})
	}
	ev, _ := koi.DecodeEvent([]byte(`{"type":"m","sent_at":1764000000123.5}`), "sent_at")
	if want := time.UnixMilli(1764000000123).Add(500 * time.Microsecond); ev.SentAt.Sub(want).Abs() > time.Microsecond {
		t.Errorf("sent_at = %v, want %v", ev.SentAt, want)
	}
	if n, ok := ev.Data.(map[string]any)["sent_at"].(json.Number); !ok || n.String() != "1764000000123.5" {
		t.Errorf("numbers keep their text: %#v", ev.Data)
	}
}

func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{`{"type":"message","sent_at":1764000000123.456}`, `{"type":"hello"}`, `[]`, `x`, `{"sent_at":"1e400"}`,
		`{"type":["a"],"sent_at":{"x":1}}`, `{"type":"m","sent_at":-1e13}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := koi.DecodeEvent(raw, "sent_at")
		if err == nil && !ev.JSON {
			t.Fatal("no error but not JSON")
		}
		if err != nil && !errors.Is(err, koi.ErrBadEvent) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}
