package koi

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// BenchmarkReadReply compares reading a 1 MiB reply through the budget
// (reserving each piece and the decode estimate), without and with the
// announced length, with io.ReadAll (what koi did before).
func BenchmarkReadReply(b *testing.B) {
	body := []byte(`{"ok":true,"items":[0` + strings.Repeat(",0", 512<<10-1) + `]}`)
	b.Run("budget", func(b *testing.B) {
		rt := &Runtime{cfg: RuntimeConfig{ReplyBudget: NewReplyBudget(64 << 20)}}
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			data, held, err := rt.readReply(bytes.NewReader(body), MaxResponseBody, -1, false)
			if err != nil || len(data) != len(body) {
				b.Fatal(err)
			}
			rt.release(held)
		}
	})
	b.Run("budget-content-length", func(b *testing.B) {
		rt := &Runtime{cfg: RuntimeConfig{ReplyBudget: NewReplyBudget(64 << 20)}}
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			data, held, err := rt.readReply(bytes.NewReader(body), MaxResponseBody, int64(len(body)), false)
			if err != nil || len(data) != len(body) {
				b.Fatal(err)
			}
			rt.release(held)
		}
	})
	// A typical event frame (a chat message, ~300 bytes, size unknown):
	// what each one read allocates.
	frame := []byte(`{"type":"message","channel":"C000042","user":"U000123","text":"shipping today (a1b2c3)","ts":"1764770000.000100","event_ts":"1764770000.000100"}` + strings.Repeat(" ", 150))
	b.Run("frame", func(b *testing.B) {
		rt := &Runtime{cfg: RuntimeConfig{ReplyBudget: NewReplyBudget(64 << 20)}}
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			data, held, err := rt.readReply(bytes.NewReader(frame), MaxResponseBody, -1, false)
			if err != nil || len(data) != len(frame) {
				b.Fatal(err)
			}
			rt.release(held)
		}
	})
	b.Run("readall", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			data, err := io.ReadAll(io.LimitReader(bytes.NewReader(body), MaxResponseBody+1))
			if err != nil || len(data) != len(body) {
				b.Fatal(err)
			}
		}
	})
}
