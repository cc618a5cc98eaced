package koi_test

import (
	"context"
	"strings"
	"testing"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/koi"
	"github.com/koipond/koipond/metrics"
)

// A run without an API base runs sets without api steps; an api step in it
// (a formation's, say) fails with an error naming the missing setting,
// counted under its key, and the koi carries on.
func TestAPIStepWithoutAPIBase(t *testing.T) {
	srv := newChatServer(t)
	set := parseSet(t, `{"behaviors": {
	  "page": {"steps": [{"request": {"type": "http", "url": "`+srv.srv.URL+`/echo"}}]},
	  "call": {"steps": [{"request": {"type": "api", "method": "auth.test"}}]}}}`)
	if !set.HasAPISteps() {
		t.Fatal("HasAPISteps is false for a set with an api step")
	}
	rt := newRuntime(t, koi.RuntimeConfig{Set: set})
	k := rt.New(behaviors.Identity{}, 1)
	ctx := context.Background()
	if err := k.RunSequence(ctx, set.Behavior("page").Sequence, nil); err != nil {
		t.Fatalf("http step without an API base: %v", err)
	}
	err := k.RunSequence(ctx, set.Behavior("call").Sequence, nil)
	if err == nil || !strings.Contains(err.Error(), `api request "auth.test": no API base URL is configured (the run's target.api_base)`) {
		t.Errorf("api step without an API base: %v", err)
	}
	if s := rt.Metrics().Snapshot().Series["api:auth.test"]; s == nil || s.Counts[metrics.Error] != 1 {
		t.Errorf("api:auth.test = %+v, want 1 error", s)
	}
}
