package koi

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/koipond/koipond/pond"
)

// pondHistoryReply is a real conversations.history reply of pond (42
// messages, about 6.6 KB).
func pondHistoryReply(b *testing.B) []byte {
	p, err := pond.Open(context.Background(), pond.Config{Users: 100, Channels: 10, DisableRateLimits: true})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	form := url.Values{"channel": {pond.ChannelID(0)}, "limit": {"42"}}
	req, _ := http.NewRequest(http.MethodPost, p.URL()+"/api/conversations.history", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+pond.Token(1))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("conversations.history from pond: %d %v", resp.StatusCode, err)
	}
	return body
}

// BenchmarkReplyJudging is the CPU a koi spends on a ~6.6 KB reply after
// reading it: decoded into a tree (what a post_action needs) or only
// scanned for its outcome (what a reply nothing reads needs).
func BenchmarkReplyJudging(b *testing.B) {
	body := pondHistoryReply(b)
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			v, err := decodeJSON(body)
			if err != nil {
				b.Fatal(err)
			}
			if m, ok := v.(map[string]any); !ok || m["ok"] != true {
				b.Fatal("not ok")
			}
		}
	})
	b.Run("scan", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if err := replyOutcome(200, body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
