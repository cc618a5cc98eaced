// Package examples holds koipond's example behavior sets and formations,
// embedded so that `koipond demo` runs from the binary alone.
//
//   - seed/: Slack's conversations.history behavior (frequencies.json +
//     sequences.json) and its announcement formation, verbatim from the
//     Koi Pond write-up.
//   - slack/: a complete set for a Slack-style API (pond): boot, event
//     handlers and eight behaviors.
//   - mqtt/: MQTT 3.1.1 over websockets, binary frames throughout: ten
//     chat rooms on a real broker (see mqtt/README.md).
package examples

import "embed"

// FS holds every example file, under seed/, slack/ and mqtt/.
//
//go:embed seed/*.json slack/*.json mqtt/*.json
var FS embed.FS
