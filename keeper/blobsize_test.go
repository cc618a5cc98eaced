package keeper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
	"github.com/nats-io/nats.go"
)

// paddedSet is a valid behavior set of about mib MiB: whitespace counts
// as content (the keeper stores and serves files as they are).
func paddedSet(mib float64) []byte {
	return []byte(bgSet + strings.Repeat(" ", int(mib*(1<<20))))
}

// Files a school could not fetch (their blob reply over the NATS
// server's max_payload, 8 MiB for the embedded one) are refused when
// uploaded, as too large, with the sizes and what to do, and nothing is
// stored; files that fit are stored and reach a school whole. Before,
// a 7 MiB set was stored and every school's fetch of it timed out, and a
// 12 MiB one failed as "unavailable" with NATS's own words.
func TestUploadsNoSchoolCouldFetchAreRefused(t *testing.T) {
	k := openKeeper(t, t.TempDir())
	ctx := context.Background()
	limit := k.conn().MaxPayload()
	for _, mib := range []float64{7, 12} {
		_, err := k.PutBehaviorSet(ctx, "test", fmt.Sprintf("big-%v", mib), []behaviors.File{{Name: "big.json", Data: paddedSet(mib)}})
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeTooLarge || !strings.Contains(e.Message, "max_payload of 8.0 MiB") || e.Field != "files" {
			t.Errorf("%v MiB set: err %v, want too_large on files naming the 8.0 MiB max_payload", mib, err)
		}
	}
	_, err := k.PutFormation(ctx, "test", behaviors.File{Name: "big.json", Data: []byte(herd + strings.Repeat("\n", 7<<20))})
	if e := (*Error)(nil); !errors.As(err, &e) || e.Code != CodeTooLarge || e.Field != "file" {
		t.Errorf("7 MiB formation: err %v, want too_large on file", err)
	}
	if n := len(k.State().BehaviorSets(nil)); n != 0 {
		t.Errorf("%d behavior sets stored after refusals, want none", n)
	}
	if n := len(k.State().Formations(nil)); n != 0 {
		t.Errorf("%d formations stored after a refusal, want none", n)
	}

	// A file of '<' is stored at its size: its record does not escape
	// them for HTML (six times the size, past the payload, while its
	// blob fitted).
	lt := []byte(`{"behaviors": {"api.test": {"doc": "` + strings.Repeat("<", 1_600_000) + `", "frequency": 0.5, "steps": [{"request": {"type": "api", "method": "api.test"}}]}}}`)
	if _, err := k.PutBehaviorSet(ctx, "test", "lt", []behaviors.File{{Name: "lt.json", Data: lt}}); err != nil {
		t.Errorf("a 1.6 MB set of '<': %.300v", err)
	}

	// 5 MiB fits (about 6.7 MiB in base64): stored, and fetched whole.
	data := paddedSet(5)
	bs, err := k.PutBehaviorSet(ctx, "test", "five", []behaviors.File{{Name: "five.json", Data: data}})
	if err != nil {
		t.Fatal(err)
	}
	nc := schoolConn(t, k)
	defer nc.Close()
	req, _ := wire.Encode(&wire.BlobRequest{Kind: wire.BlobBehaviorSet, Hash: bs.Hash})
	msg, err := nc.Request(wire.SubjectBlob, req, 10*time.Second)
	if err != nil {
		t.Fatalf("fetching the 5 MiB set (max payload %d): %v", limit, err)
	}
	var rep wire.BlobReply
	if err := wire.Decode(msg.Data, &rep); err != nil || rep.Error != "" || len(rep.Files) != 1 || !bytes.Equal(rep.Files[0].Data, data) {
		t.Fatalf("fetched the 5 MiB set: err %v, reply error %q, %d files", err, rep.Error, len(rep.Files))
	}
}

// blobReplySize is the size of the encoded reply, without encoding the
// files' contents.
func TestBlobReplySizeIsTheEncodedSize(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 50 {
		var files []wire.File
		for j := range rng.IntN(4) + 1 {
			d := make([]byte, rng.IntN(5000))
			for k := range d {
				d[k] = byte(rng.IntN(256))
			}
			files = append(files, wire.File{Name: fmt.Sprintf("f<%d>\"%d\".json", i, j), Data: d})
		}
		rep := &wire.BlobReply{Kind: wire.BlobBehaviorSet, Hash: strings.Repeat("a", 64), Files: files}
		want, err := wire.Encode(rep)
		if err != nil {
			t.Fatal(err)
		}
		got, err := blobReplySize(rep.Kind, rep.Hash, files)
		if err != nil || got != len(want) {
			t.Fatalf("case %d: blobReplySize = %d (err %v), encoded %d", i, got, err, len(want))
		}
	}
}

// A stored file whose reply is over the payload limit (stored under a
// larger one) is answered with an error naming both sizes, small enough
// to send, never with silence.
func TestBlobOverThePayloadIsAnsweredWithWhy(t *testing.T) {
	rep := &wire.BlobReply{Kind: wire.BlobFormation, Hash: strings.Repeat("b", 64),
		Files: []wire.File{{Name: "f.json", Data: bytes.Repeat([]byte("x"), 3<<20)}}}
	data, why, err := fitBlob(rep, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var got wire.BlobReply
	if err := wire.Decode(data, &got); err != nil {
		t.Fatal(err)
	}
	if len(data) > 1<<20 || len(got.Files) != 0 || got.Hash != rep.Hash || got.Kind != rep.Kind || got.Error != why ||
		!strings.Contains(why, "formation") || !strings.Contains(why, "4.0 MiB") || !strings.Contains(why, "max_payload of 1.0 MiB") {
		t.Errorf("reply of %d bytes: %+v (why %q)", len(data), got, why)
	}
	if data, why, err := fitBlob(rep, 8<<20); err != nil || why != "" || len(data) < 3<<20 {
		t.Errorf("under 8 MiB: %d bytes, why %q, err %v; want the files", len(data), why, err)
	}
}

// A record NATS refuses as larger than its max_payload is the caller's
// too-large request, not the store being unavailable (which says retry).
func TestStoreErrMaxPayloadIsTooLarge(t *testing.T) {
	err := storeErr("creating the run", fmt.Errorf("state: persisting run.x: %w", nats.ErrMaxPayload))
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeTooLarge || !strings.Contains(e.Message, "max_payload") || !errors.Is(err, nats.ErrMaxPayload) {
		t.Errorf("storeErr = %v, want too_large naming max_payload, wrapping nats.ErrMaxPayload", err)
	}
	err = storeErr("storing the behavior set", &state.PersistError{Key: "bs.0123", Bytes: 9 << 20, Err: nats.ErrMaxPayload})
	if !errors.As(err, &e) || e.Code != CodeTooLarge || !strings.Contains(e.Message, "the record (bs.0123) takes 9.0 MiB (9437184 bytes), larger than") {
		t.Errorf("storeErr = %v, want too_large naming the record and its size", err)
	}
	if err := onField(err, "files"); !errors.As(err, &e) || e.Field != "files" {
		t.Errorf("onField: %v, want the field files", err)
	}
	if err := storeErr("creating the run", errors.New("nats: timeout")); !errors.As(err, &e) || e.Code != CodeUnavailable {
		t.Errorf("storeErr(timeout) = %v, want unavailable", err)
	}
}
