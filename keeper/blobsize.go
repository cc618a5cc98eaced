package keeper

import (
	"encoding/base64"
	"fmt"
	"strings"
	"sync"

	"github.com/koipond/koipond/wire"
	"github.com/nats-io/nats.go"
)

// Schools fetch behavior sets and formations by content hash over NATS
// (wire.SubjectBlob), each in one reply. A reply over the NATS server's
// max_payload is never delivered: the school would wait out its request
// and ask again, for ever, with nothing to say but a timeout. So the
// keeper refuses to store files whose reply could not be sent (the
// embedded server takes 8 MiB, an external one 1 MiB by default, while
// an upload may carry 16 MiB), and answers a fetch of files stored under
// a larger limit with an error that says why.

// blobReplySize is the size of the encoded reply that carries files: the
// reply without their contents, plus each content in base64 and quotes
// where the skeleton says null.
func blobReplySize(kind wire.BlobKind, hash string, files []wire.File) (int, error) {
	skeleton := &wire.BlobReply{Kind: kind, Hash: hash, Files: make([]wire.File, len(files))}
	extra := 0
	for i, f := range files {
		skeleton.Files[i].Name = f.Name
		extra += base64.StdEncoding.EncodedLen(len(f.Data)) + len(`""`) - len("null")
	}
	data, err := wire.Encode(skeleton)
	if err != nil {
		return 0, err
	}
	return len(data) + extra, nil
}

// blobTooLarge says why a reply of n bytes cannot reach a school.
func blobTooLarge(kind wire.BlobKind, n int, limit int64) string {
	return fmt.Sprintf("schools fetch a %s over NATS in one message, and this one takes %s (%d bytes), more than the NATS server's max_payload of %s: "+
		"make its files smaller (whitespace counts), or raise max_payload", strings.ReplaceAll(string(kind), "_", " "), mib(int64(n)), n, mib(limit))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// checkBlobFits refuses files (too_large, on field) whose blob reply
// would be over the NATS connection's payload limit. Without a
// connection it passes: the fetch says so if it must.
func (k *Keeper) checkBlobFits(field string, kind wire.BlobKind, hash string, files []wire.File) error {
	n, err := blobReplySize(kind, hash, files)
	if err != nil {
		return err
	}
	if limit := k.payloadLimit(); int64(n) > limit {
		return &Error{Code: CodeTooLarge, Field: field, Message: blobTooLarge(kind, n, limit)}
	}
	return nil
}

// respondBlob answers a request for the blob kind and hash (Blob,
// fitBlob), counting a reply over the NATS payload limit as a rejection.
// Replies that carry files are kept encoded (blobCache): blobs never
// change, and a request of 100 bytes for a 5 MiB set copied and encoded
// the files anew each time, 7.5 ms of the keeper's one blob handler.
func (k *Keeper) respondBlob(m *nats.Msg, kind wire.BlobKind, hash string) {
	key := string(kind) + " " + hash
	if data := k.blobs.get(key); data != nil {
		k.send(m, data, nil)
		return
	}
	rep := k.Blob(kind, hash)
	data, why, err := fitBlob(rep, k.payloadLimit())
	if why != "" {
		k.stats.reject(k.log, "blob: over the NATS payload limit", fmt.Errorf("%s %.16s: %s", rep.Kind, rep.Hash, why))
	}
	if err == nil && why == "" && rep.Error == "" {
		k.blobs.put(key, data)
	}
	k.send(m, data, err)
}

// maxBlobCache bounds the encoded blob replies kept: room for several of
// the largest the embedded server carries (8 MiB).
const maxBlobCache = 64 << 20

// blobCache keeps encoded blob replies by kind and hash, at most
// maxBlobCache bytes of them; when full, it forgets arbitrary ones.
type blobCache struct {
	mu    sync.Mutex
	m     map[string][]byte
	bytes int
}

func (c *blobCache) get(key string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key]
}

func (c *blobCache) put(key string, data []byte) {
	if len(data) > maxBlobCache {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string][]byte{}
	}
	for k, d := range c.m {
		if c.bytes+len(data) <= maxBlobCache {
			break
		}
		delete(c.m, k)
		c.bytes -= len(d)
	}
	c.bytes += len(data) - len(c.m[key])
	c.m[key] = data
}

// fitBlob encodes rep, or, when that is over limit bytes, a reply with
// the same kind and hash and an error in place of the files, which the
// school shows on the run; why is that error.
func fitBlob(rep *wire.BlobReply, limit int64) (data []byte, why string, err error) {
	if data, err = wire.Encode(rep); err != nil || int64(len(data)) <= limit {
		return data, "", err
	}
	why = blobTooLarge(rep.Kind, len(data), limit)
	data, err = wire.Encode(&wire.BlobReply{Kind: rep.Kind, Hash: rep.Hash, Error: why})
	return data, why, err
}
