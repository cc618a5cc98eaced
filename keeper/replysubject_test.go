package keeper

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/koipond/koipond/wire"
)

// The keeper answers polls and blob requests only in a school's inbox:
// a school that names the keeper's state bucket as its reply subject
// gets no reply written there. Such replies once overwrote the global
// switch (a stop undone) and left records that stopped the keeper from
// starting again.
func TestRepliesGoOnlyToSchoolInboxes(t *testing.T) {
	dir := t.TempDir()
	k := openKeeper(t, dir)
	ctx := context.Background()
	run := seedRun(t, k, 10)
	stop, err := k.SetSwitch(ctx, "test", wire.Stopped)
	if err != nil {
		t.Fatal(err)
	}
	liar := schoolConn(t, k)
	defer liar.Close()
	blob, err := wire.Encode(&wire.BlobRequest{Kind: wire.BlobFormation, Hash: "nothing"})
	if err != nil {
		t.Fatal(err)
	}
	kv := "$KV." + DefaultBucket + "."
	for _, m := range []struct {
		subject, reply string
		data           []byte
	}{
		{wire.SubjectPoll, kv + "switch", []byte(`{}`)},
		{wire.SubjectBlob, kv + "run." + run.ID, blob},
		{wire.SubjectBlob, kv + "school.x", blob},
		{wire.SubjectPoll, "", []byte(`{}`)}, // no reply subject: nothing to do
	} {
		if err := liar.PublishMsg(&nats.Msg{Subject: m.subject, Reply: m.reply, Data: m.data}); err != nil {
			t.Fatal(err)
		}
	}
	// Messages of one connection are handled in order: once the same
	// requests with a school's inbox are answered, those were handled.
	for _, subject := range []string{wire.SubjectPoll, wire.SubjectBlob} {
		if _, err := liar.Request(subject, blob, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	r := k.stats.rejections()
	for _, subject := range []string{wire.SubjectPoll, wire.SubjectBlob} {
		if cause := subject + ": reply subject outside the school inboxes"; r[cause] != 2 {
			t.Errorf("%d rejections of %q, want 2", r[cause], cause)
		}
	}
	k.Close()
	k2 := openKeeper(t, dir) // it starts on what the bucket holds
	if g := k2.State().Switch(nil); g == nil || g.State != wire.Stopped || g.Epoch != stop.Epoch {
		t.Errorf("after a restart the switch is %+v, want stopped at epoch %d", g, stop.Epoch)
	}
	if k2.State().Run(nil, run.ID) == nil {
		t.Errorf("run %s lost", run.ID)
	}
	if s := k2.State().School(nil, "x"); s != nil {
		t.Errorf("a school record appeared from nowhere: %+v", s)
	}
}
