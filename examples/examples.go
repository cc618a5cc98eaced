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
//   - socketio/, graphql-ws/: behavior sets for a Socket.IO chat room and a
//     graphql-ws chat, each beside its node server (see their README.md);
//     only behaviors.json is embedded, not the servers' npm files.
package examples

import "embed"

// FS holds every example behavior and formation file, under seed/,
// slack/, mqtt/, socketio/ and graphql-ws/.
//
//go:embed seed/*.json slack/*.json mqtt/*.json socketio/behaviors.json graphql-ws/behaviors.json
var FS embed.FS

// Warehouse holds the sample usage export of warehouse/ (a raw call log as
// CSV and JSON lines), which `koipond demo` serves to its warehouse page.
//
//go:embed warehouse/*.csv warehouse/*.jsonl warehouse/README.md
var Warehouse embed.FS
