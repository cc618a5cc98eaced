package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// Signature headers, on webhook deliveries and on trigger calls:
// X-Koipond-Signature is "sha256=" + hex(HMAC-SHA256(secret, timestamp +
// "." + body)), the timestamp being X-Koipond-Timestamp (unix seconds).
const (
	HeaderTimestamp = "X-Koipond-Timestamp"
	HeaderSignature = "X-Koipond-Signature"
)

// Sign returns the X-Koipond-Signature value of body sent at ts (unix
// seconds) under secret.
func Sign(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
