// Package behaviors is koipond's behavior language: the behavior-set file
// format (frequencies × sequences, a boot sequence, websocket event
// handlers), its validation with precise positions, the template functions
// koi call from steps, each koi's local store, and the frequency schedule
// that turns per-minute probabilities into planned calls.
//
// # Connection lifecycle
//
// "on_connect" ({"doc", "steps"}) runs after every websocket connect and
// reconnect, beside the frame reader (so it can await a login reply). Until
// it has succeeded no other ws send goes out: behavior, formation, boot and
// on_event steps wait for it up to their request's timeout, then fail
// (transport, "websocket not connected"); api and http requests never
// wait. Its metric keys are "on_connect" (the whole sequence) and
// "on_connect:<n>" (its steps). A failed on_connect closes the socket (close
// 1000 "on_connect failed") and the koi redials with the reconnect backoff,
// which such a connection does not reset. A halt in it counts as success
// (as in boot). While paused it waits for resume; a pause in the middle of
// it closes the socket (close 1000 "paused during on_connect"), since a
// second login on the same socket is refused by most servers, and the
// next connection runs it after the resume. A koi is ready once booted and
// its on_connect has succeeded once. "on_disconnect" runs after each connection ends, except on stop,
// and after each dial the server refuses with an HTTP status (a stale URL
// or token) (key "on_disconnect"; actions, api and http requests only;
// skipped while paused), typically {{ setKoi "logged_in" false }}, or an
// api request for a fresh websocket URL, as examples/slack does with
// rtm.connect.
//
// Without a connect step the socket is dialled after boot, so ws steps in
// boot fail at once. A {"type": "connect"} request, allowed in boot only,
// opens the socket now from the store's websocket spec (boot may just have
// set it with websocketURL), runs on_connect, and returns once both
// succeeded or its timeout_ms (default the koi's request timeout) passed;
// the connection loop then keeps that connection after boot.
//
// # Frames
//
// "frames" names each incoming frame's type, which drives its metric key
// "event:<type>", its fan-out delay, "on_event" and await "type":
//
//	"frames": {
//	  "json":   [ {"field": "payload.kind"}, {"field": "type"} ],
//	  "text":   [ {"match": "^(?P<type>[a-z]+)\\|"}, {"prefix": "PING", "type": "ping"} ],
//	  "binary": [ {"prefix_hex": "20", "type": "connack"}, {"template": "{{ mqttType . }}"} ],
//	  "time_field": "sent_at" }
//
// A text frame holding a JSON object or array goes to the json rules, any
// other text frame (broken JSON too) to the text rules, a binary frame to
// the binary rules. Each list is tried in order and the first rule that
// yields a type wins. A rule has one of: "field" (json: a dotted path; a
// string is the type, a number as written), "match" (json and text: an RE2
// regexp on the raw text; the type is its (?P<type>…) group, else the
// rule's "type"; a group that can only capture "" is an error; at most
// about 1000 instructions with counted repeats spelled out), "prefix"
// (json and text) or "prefix_hex" (binary: hex bytes), which need "type",
// or "template" (any list: rendered with `.` =
// the frame's value; its trimmed output is the type, empty for none).
// Types are 1 to 64 printable ASCII bytes (longer or odd names from the
// wire name nothing), at most 64 rules per list. A rule may add "sent_at":
// a template rendering the send time in unix milliseconds; otherwise a JSON
// frame's "time_field" (default "sent_at") gives it. Without "frames", JSON
// frames are named by their "type" field. A frame no rule names counts
// under "event:other" (never as an error).
//
// A frame's value (`.` in on_event actions, post_actions of the ws request
// that awaited it, classifier templates) is the decoded JSON for JSON
// frames (numbers as json.Number), else the text, or for a binary frame its
// bytes as a Go string.
//
// "on_event" maps a frame type (or "*", every named frame) to an array of
// actions, run on the reader as the frame arrives, or to a sequence
// {"steps": […]} that may send (e.g. a Socket.IO pong), run on its own
// goroutine with the frame's value as the variable "event" (get "event").
// Handlers run only once on_connect has succeeded: frames that arrive while
// it runs (a welcome burst, retained messages behind a login reply) are
// held, up to 32 frames and 64 KiB, and handled in order the moment it
// succeeds (dropped with the connection if it fails; past the bound
// counted under "on_event:<type>" as an error). At most 4 sequences run
// at once per koi, and a frame arriving while 4 run is dropped and counted
// under "on_event:<type>" as an error.
//
// Templates are Go text/template with sprig (less what reads the
// environment, the file system or the network, see RemovedSprig) and the
// koi functions (see KoiFuncs and FUNCTIONS.md). A set's templates are
// parsed once into a Program and executed by any number of koi; execution
// is bounded in time, output and loop iterations (MaxDuration, MaxOutput,
// MaxIterations).
//
// What each request type sends and waits for (binary frames, awaits
// correlated by templated type, pattern, fields and `when`, error frames,
// metric keys) is described in REQUESTS.md.
package behaviors
