package koi

import (
	"encoding/json"
	"fmt"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/metrics"
)

// replyOutcome judges an api reply that nothing reads, the way api judges a
// decoded one, from one scan that builds nothing: a reply that is not JSON
// is an error, and so is a Slack-style `"ok": false` (with its `error`).
func replyOutcome(status int, body []byte) error {
	okFalse := false
	var errRaw []byte
	_, err := behaviors.ScanTopLevel(body, func(key, val []byte) {
		switch string(key) {
		case "ok":
			okFalse = string(val) == "false"
		case "error":
			errRaw = val
		}
	})
	if err != nil {
		return &requestError{outcome: metrics.Error, msg: fmt.Sprintf("HTTP %d: reply is not JSON: %v", status, err),
			reason: reasonNotJSON, sample: bodySample(body)}
	}
	if okFalse {
		var e string
		if len(errRaw) > 0 && errRaw[0] == '"' {
			_ = json.Unmarshal(errRaw, &e) // a string ScanTopLevel has checked
		}
		return okFalseError(e, body)
	}
	return nil
}

// okFalseError is a Slack-style `"ok": false` reply, counted under its
// `error` string (e.g. "not_authed"), with the reply's start as sample.
func okFalseError(e string, body []byte) *requestError {
	reason := e
	if reason == "" {
		reason = reasonOKFalse
	}
	return &requestError{outcome: metrics.Error, msg: "ok:false: " + e, reason: reason, sample: bodySample(body)}
}
