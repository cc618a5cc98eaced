package behaviors

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// renderWith renders src for a koi of index 4 with the given sequence
// variables.
func renderWith(t *testing.T, p *Program, st *Store, src string, vars map[string]any) (string, error) {
	t.Helper()
	return p.Render(context.Background(), &Env{Store: st, Vars: vars}, compileOne(t, p, src), nil)
}

// Every example in FUNCTIONS.md renders what the page says it does.
func TestProtocolExamples(t *testing.T) {
	p := NewProgram()
	for _, e := range protocolExamples {
		got, err := renderWith(t, p, NewStore(Identity{Index: 4}), e.Src, nil)
		if err != nil || got != e.Out {
			t.Errorf("%s\n  = %q, %v\n want %q", e.Src, got, err, e.Out)
		}
	}
	for _, f := range protocolFuncDocs {
		if !slices.ContainsFunc(protocolExamples, func(e funcExample) bool {
			return strings.Contains(e.Src, f.Name+" ") || strings.Contains(e.Src, f.Name+" }}") || strings.Contains(e.Src, f.Name+")")
		}) {
			t.Errorf("%s has no example in FUNCTIONS.md", f.Name)
		}
	}
}

// The MQTT encoders produce the bytes MQTT 3.1.1 prescribes, worked out by
// hand from the spec's sections 2.2 (fixed header, remaining length), 3.1
// (CONNECT, figure 3.6's variable header: 00 04 'M' 'Q' 'T' 'T' 04 flags
// keepalive), 3.3 (PUBLISH), 3.4 (PUBACK), 3.8 (SUBSCRIBE), 3.10
// (UNSUBSCRIBE), 3.12 (PINGREQ) and 3.14 (DISCONNECT).
func TestMQTTEncodingsByHand(t *testing.T) {
	p := NewProgram()
	st := NewStore(Identity{})
	long := strings.Repeat("x", 200) // remaining length 2+1+200 = 203
	tests := []struct {
		src  string
		want string // hex, spaced by field
	}{
		// CONNECT, clean session, keepalive 10, client id "a" (figure 3.6's header with flags 02)
		{`mqttConnect "a" 10`, "10 0d 0004 4d515454 04 02 000a 0001 61"},
		// with a user name and password: flags 80|40|02 = c2
		{`mqttConnect "a" 10 "u" "pw"`, "10 14 0004 4d515454 04 c2 000a 0001 61 0001 75 0002 7077"},
		// with a user name only: flags 82
		{`mqttConnect "" 0 "u"`, "10 0f 0004 4d515454 04 82 0000 0000 0001 75"},
		// SUBSCRIBE is 82 (its reserved flags are 0010)
		{`mqttSubscribe 10 "a/b" 1`, "82 08 000a 0003 612f62 01"},
		{`mqttUnsubscribe 10 "a/b"`, "a2 07 000a 0003 612f62"},
		// PUBLISH qos 0 has no packet id; qos 1 sets flag 0010
		{`mqttPublish "a/b" "hi" 0`, "30 07 0003 612f62 6869"},
		{`mqttPublish "a/b" "hi" 1 65535`, "32 09 0003 612f62 ffff 6869"},
		{`mqttPublish "a/b" "" 2 1`, "34 07 0003 612f62 0001"},
		// remaining length 203 = 0x4b + 1×128: cb 01
		{`mqttPublish "t" (get "long") 0`, "30 cb01 0001 74 " + hex.EncodeToString([]byte(long))},
		{`mqttPuback 258`, "40 02 0102"},
		{`mqttPingreq`, "c0 00"},
		{`mqttDisconnect`, "e0 00"},
	}
	for _, tt := range tests {
		got, err := renderWith(t, p, st, `{{ hexenc (`+tt.src+`) }}`, map[string]any{"long": long})
		if want := strings.ReplaceAll(tt.want, " ", ""); err != nil || got != want {
			t.Errorf("%s\n  = %s, %v\n want %s", tt.src, got, err, want)
		}
	}
	bad := map[string]string{
		`mqttConnect "a" 65536`:               "keepalive 65536 is outside 0..65535",
		`mqttConnect "a" 1 "u" "p" "x"`:       "at most a user name and a password",
		`mqttSubscribe 0 "a" 0`:               "packet id 0 is outside 1..65535",
		`mqttSubscribe 1 "a" 3`:               "qos 3 is outside 0..2",
		`mqttSubscribe 1 "" 0`:                "empty topic filter",
		`mqttPublish "a/#" "x" 0`:             "hold no wildcard",
		`mqttPublish "a" "x" 1`:               "qos 1 needs a packet id",
		`mqttPublish "a" "x" 1 70000`:         "packet id 70000 is outside",
		`mqttPublish "a" "x" 0.5`:             "0.5 is not a whole number",
		`mqttPublish "a" (list 1) 0`:          "is not bytes or a string",
		`mqttPuback "x"`:                      `"x" is not a whole number`,
		`mqttConnect (repeat 70000 "c") 1`:    "client id of 70000 bytes is over MQTT's 65535",
		`mqttPublish (repeat 70000 "t") "" 0`: "topic of 70000 bytes is over MQTT's 65535",
	}
	for src, want := range bad {
		if _, err := renderWith(t, p, st, `{{ `+src+` }}`, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want it to say %q", src, err, want)
		} else if !strings.HasPrefix(err.Error(), "test: ") {
			t.Errorf("%s: error %q does not say where", src, err)
		}
	}
}

// What a broker sends decodes to its fields, and what the encoders build
// decodes back to what they were given.
func TestMQTTDecode(t *testing.T) {
	type fields map[string]any
	tests := []struct {
		name string
		hex  string
		want fields
	}{
		{"connack accepted", "20 02 00 00", fields{"type": "connack", "rc": 0, "session_present": false, "len": 4}},
		{"connack refused, session present", "20 02 01 05", fields{"type": "connack", "rc": 5, "session_present": true}},
		{"suback granted 1 and failure", "90 04 0007 01 80", fields{"type": "suback", "pid": 7, "rc": 1, "codes": []any{1, 0x80}}},
		{"publish qos 0", "30 07 0003 612f62 6869", fields{"type": "publish", "topic": "a/b", "payload": "hi", "qos": 0, "pid": 0, "retain": false}},
		{"publish qos 1 dup retained", "3b 09 0003 612f62 0102 6869", fields{"type": "publish", "qos": 1, "pid": 258, "dup": true, "retain": true, "payload": "hi"}},
		{"publish with an empty payload", "30 05 0003 612f62", fields{"payload": "", "topic": "a/b"}},
		{"puback", "40 02 ffff", fields{"type": "puback", "pid": 65535}},
		{"pubrec", "50 02 0001", fields{"type": "pubrec", "pid": 1}},
		{"unsuback", "b0 02 0009", fields{"type": "unsuback", "pid": 9}},
		{"pingresp", "d0 00", fields{"type": "pingresp", "len": 2, "rest": ""}},
		{"two packets in one frame", "d0 00 40 02 0003", fields{"type": "pingresp", "len": 2, "rest": "\x40\x02\x00\x03"}},
		{"connect with credentials", "10 14 0004 4d515454 04 c2 000a 0001 61 0001 75 0002 7077",
			fields{"type": "connect", "client_id": "a", "keepalive": 10, "username": "u", "password": "pw", "protocol": "MQTT", "level": 4}},
		{"subscribe", "82 08 000a 0003 612f62 01", fields{"type": "subscribe", "pid": 10, "topic": "a/b", "qos": 1}},
	}
	for _, tt := range tests {
		raw, err := hex.DecodeString(strings.ReplaceAll(tt.hex, " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseMQTT(string(raw))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		for k, v := range tt.want {
			if !reflect.DeepEqual(got[k], v) {
				t.Errorf("%s: .%s = %#v, want %#v", tt.name, k, got[k], v)
			}
		}
		if typ, _ := tt.want["type"].(string); typ != "" {
			if mt, _ := renderFunc(t, "mqttType", string(raw)).(string); mt != typ {
				t.Errorf("%s: mqttType = %q, want %q", tt.name, mt, typ)
			}
		}
		if pid := renderFunc(t, "mqttPacketID", string(raw)); pid != got["pid"] {
			t.Errorf("%s: mqttPacketID = %v, decode says %v", tt.name, pid, got["pid"])
		}
	}
	bad := []struct{ name, hex, want string }{
		{"empty", "", "no bytes"},
		{"reserved type 0", "00 00", "packet type 0 is reserved"},
		{"reserved type 15", "f0 00", "packet type 15 is reserved"},
		{"header cut", "30", "end inside the fixed header"},
		{"remaining length of 5 bytes", "30 ff ff ff ff 01", "longer than 4 bytes"},
		{"body shorter than said", "30 07 0003 61", "says 7 bytes follow its header, 3 do"},
		{"topic longer than the body", "30 03 00ff 61", "the topic says 255 bytes, 1 are left"},
		{"qos 3", "36 05 0001 61 0001", "qos 3"},
		{"connack too short", "20 01 00", "ends before the return code"},
		{"connack too long", "20 03 00 00 00", "1 bytes after its fields"},
		{"suback without codes", "90 02 0001", "without a return code"},
		{"subscribe without topics", "82 02 0001", "without a topic filter"},
		{"puback without id", "40 00", "ends before the packet id"},
	}
	for _, tt := range bad {
		raw, _ := hex.DecodeString(strings.ReplaceAll(tt.hex, " ", ""))
		if _, err := parseMQTT(string(raw)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
		if mt := renderFunc(t, "mqttType", string(raw)); mt != "" && strings.Contains(tt.want, "reserved") {
			t.Errorf("%s: mqttType = %q, want \"\"", tt.name, mt)
		}
	}
	// Round trips through the encoders.
	p := NewProgram()
	st := NewStore(Identity{})
	for qos := range 3 {
		for _, payload := range []string{"", "x", strings.Repeat("\x00\xff", 100), strings.Repeat("p", 20000)} {
			src := fmt.Sprintf(`{{ $p := mqttDecode (mqttPublish "room/1" (get "payload") %d 4242) }}{{ $p.type }}|{{ $p.topic }}|{{ $p.qos }}|{{ $p.pid }}|{{ eq $p.payload (get "payload") }}|{{ $p.rest }}`, qos)
			pid := 4242
			if qos == 0 {
				pid = 0
			}
			want := fmt.Sprintf("publish|room/1|%d|%d|true|", qos, pid)
			if got, err := renderWith(t, p, st, src, map[string]any{"payload": payload}); err != nil || got != want {
				t.Errorf("publish qos %d of %d bytes: %q, %v; want %q", qos, len(payload), got, err, want)
			}
		}
	}
	for src, want := range map[string]string{
		`{{ $p := mqttDecode (mqttSubscribe 9 "a/+" 2) }}{{ $p.type }} {{ $p.pid }} {{ $p.topic }} {{ $p.qos }}`:                         "subscribe 9 a/+ 2",
		`{{ $p := mqttDecode (mqttConnect "koi" 60 "u" "p") }}{{ $p.client_id }} {{ $p.keepalive }} {{ $p.username }} {{ $p.password }}`: "koi 60 u p",
		`{{ $p := mqttDecode (mqttPuback 77) }}{{ $p.type }} {{ $p.pid }}`:                                                               "puback 77",
		`{{ $p := mqttDecode (print mqttPingreq mqttDisconnect) }}{{ $p.type }} {{ mqttType $p.rest }}`:                                  "pingreq disconnect",
		`{{ mqttPacketID (mqttPublish "t" "x" 1 513) }} {{ mqttPacketID (mqttPublish "t" "x" 0) }} {{ mqttPacketID "junk" }}`:            "513 0 0",
	} {
		if got, err := renderWith(t, p, st, src, nil); err != nil || got != want {
			t.Errorf("%s\n  = %q, %v; want %q", src, got, err, want)
		}
	}
}

// renderFunc calls one bound koi function directly.
func renderFunc(t *testing.T, name string, args ...any) any {
	t.Helper()
	b := &binding{env: &Env{Store: NewStore(Identity{})}, budget: budget{limit: DefaultBudget}}
	f := reflect.ValueOf(funcMap(b)[name])
	in := make([]reflect.Value, len(args))
	for i, a := range args {
		in[i] = reflect.ValueOf(a)
		if a == nil {
			in[i] = reflect.Zero(f.Type().In(min(i, f.Type().NumIn()-1)))
		}
	}
	out := f.Call(in)
	if len(out) > 1 && !out[1].IsNil() {
		return out[1].Interface()
	}
	return out[0].Interface()
}

// Socket.IO packets built by the helpers decode back to what they carry,
// and every Engine.IO / Socket.IO packet type gets its stable name.
func TestSocketIOPackets(t *testing.T) {
	p := NewProgram()
	st := NewStore(Identity{})
	round := map[string]string{
		`{{ $p := sioDecode (sioEvent "chat" (dict "text" "<b>&" "n" 1) (list 1 "two") nil) }}{{ $p.type }}|{{ $p.event }}|{{ (index $p.args 0).text }}|{{ toJson (slice $p.args 1) }}|{{ $p.nsp }}|{{ $p.id }}|{{ $p.eio }}|{{ $p.sio }}`: `event:chat|chat|<b>&|[[1,"two"],null]|/|-1|4|2`,
		`{{ sioEvent "chat" "<b>" }}`: `42["chat","<b>"]`,
		`{{ $p := sioDecode (sioEventNs "/room" "join" "r1") }}{{ $p.nsp }}|{{ $p.event }}|{{ index $p.args 0 }}`: `/room|join|r1`,
		`{{ $p := sioDecode (sioAckEvent 991 "ping") }}{{ $p.id }}|{{ $p.event }}|{{ len $p.args }}`:              `991|ping|0`,
		`{{ $p := sioDecode (sioAck 3 "ok" 2) }}{{ $p.type }}|{{ $p.id }}|{{ toJson $p.args }}`:                   `ack|3|["ok",2]`,
		`{{ sioAck 3 }}`: `433[]`,
		`{{ $p := sioDecode "0{\"sid\":\"abc\",\"pingInterval\":25000}" }}{{ $p.type }}|{{ $p.data.sid }}|{{ $p.data.pingInterval }}`: `open|abc|25000`,
		`{{ $p := sioDecode "40/admin,{\"sid\":\"s1\"}" }}{{ $p.type }}|{{ $p.nsp }}|{{ $p.data.sid }}`:                               `connect|/admin|s1`,
		`{{ $p := sioDecode "44{\"message\":\"not authorized\"}" }}{{ $p.type }}|{{ $p.data.message }}`:                               `connect_error|not authorized`,
		`{{ $p := sioDecode "451-[\"upload\",{\"_placeholder\":true,\"num\":0}]" }}{{ $p.type }}|{{ $p.attachments }}`:                `binary_event:upload|1`,
		`{{ $p := sioDecode "2probe" }}{{ $p.type }}|{{ $p.data }}`:                                                                   `ping|probe`,
		`{{ $p := sioDecode "4hello" }}{{ $p.type }}|{{ $p.data }}|{{ $p.sio }}`:                                                      `message|hello|-1`,
	}
	for src, want := range round {
		if got, err := renderWith(t, p, st, src, nil); err != nil || got != want {
			t.Errorf("%s\n  = %q, %v\n want %q", src, got, err, want)
		}
	}
	types := map[string]string{
		`0{"sid":"x"}`: "open", "1": "close", "2": "ping", "3": "pong", "5": "upgrade", "6": "noop",
		"40": "connect", "41": "disconnect", "41/admin,": "disconnect", `42["a b",1]`: "event:a b", `42/x,5["e"]`: "event:e",
		"431[]": "ack", `44{"message":"no"}`: "connect_error", `451-["f",{}]`: "binary_event:f", "461-1[{}]": "binary_ack", "461-[{}]": "",
		"4": "message", "4plain": "message",
		// not Engine.IO
		"": "", "hello": "", "7": "", `42["unterminated`: "", "42[1]": "", "42{}": "", "43[]": "", "0{": "", `42["a"]x`: "",
		"451[\"f\"]": "", "42999999999999999999[\"e\"]": "",
	}
	for text, want := range types {
		if got := renderFunc(t, "sioType", text); got != want {
			t.Errorf("sioType %q = %#v, want %q", text, got, want)
		}
	}
	// The names are total: whatever a frame decoded to, no error.
	for _, v := range []any{nil, map[string]any{"type": "x"}, []any{1}, 42} {
		if got := renderFunc(t, "sioType", v); got != "" {
			t.Errorf("sioType of %#v = %#v, want \"\"", v, got)
		}
		if got := renderFunc(t, "mqttType", v); got != "" {
			t.Errorf("mqttType of %#v = %#v, want \"\"", v, got)
		}
		if got := renderFunc(t, "mqttPacketID", v); got != 0 {
			t.Errorf("mqttPacketID of %#v = %#v, want 0", v, got)
		}
	}
	// A JSON text frame's Value is a json.Number for "2" or "40": it still
	// has its name.
	if got := renderFunc(t, "sioType", json.Number("40")); got != "connect" {
		t.Errorf("sioType of the JSON number 40 = %v", got)
	}
	bad := map[string]string{
		`sioDecode ""`:                  "empty text is not an Engine.IO packet",
		`sioDecode "x"`:                 "does not start with an Engine.IO packet type",
		`sioDecode "42{}"`:              `event packet without a ["name", …] payload`,
		`sioDecode "42[7]"`:             "event name is json.Number, not a string",
		`sioDecode "43[]"`:              "ack packet without an ack id",
		`sioDecode "42[\"a\"] junk"`:    "payload is not JSON",
		`sioDecode "00]0"`:              "open packet: payload is not JSON",
		`sioDecode "45-[]"`:             "binary packet without an attachment count",
		`sioEvent ""`:                   "empty event name",
		`sioEventNs "room" "e"`:         "must start with /",
		`sioAckEvent -1 "e"`:            "ack id -1 is outside",
		`sioDecode (list 1)`:            "is not bytes or a string",
		`sioEvent "e" (get "cyclic")`:   "template budget: sioEvent would produce more than 9 EB",
		`sioDecode "42[\"a\",\"\\x\"]"`: "payload is not JSON",
	}
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	for src, want := range bad {
		if _, err := renderWith(t, p, st, `{{ `+src+` }}`, map[string]any{"cyclic": cyclic}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", src, err, want)
		}
	}
}

// Length prefixes and varints round-trip for every width and for the
// edges of each varint length.
func TestFramingRoundTrips(t *testing.T) {
	p := NewProgram()
	st := NewStore(Identity{})
	for _, w := range []int{1, 2, 4} {
		for _, n := range []int{0, 1, 255, 256, 65535, 65536} {
			if n > 1<<(8*w)-1 {
				src := fmt.Sprintf(`{{ lenPrefix %d (get "body") }}`, w)
				if _, err := renderWith(t, p, st, src, map[string]any{"body": strings.Repeat("b", n)}); err == nil || !strings.Contains(err.Error(), "do not fit") {
					t.Errorf("lenPrefix %d of %d bytes: err = %v", w, n, err)
				}
				continue
			}
			src := fmt.Sprintf(`{{ $f := lenPrefixRead %d (print (lenPrefix %d (get "body")) "tail") }}{{ $f.len }}|{{ eq $f.body (get "body") }}|{{ $f.rest }}`, w, w)
			want := fmt.Sprintf("%d|true|tail", n)
			if got, err := renderWith(t, p, st, src, map[string]any{"body": strings.Repeat("b", n)}); err != nil || got != want {
				t.Errorf("width %d, %d bytes: %q, %v", w, n, got, err)
			}
		}
	}
	var values []int64
	for sh := range 63 {
		values = append(values, 1<<sh-1, 1<<sh, -(1 << sh), -(1<<sh - 1))
	}
	values = append(values, math.MaxInt64, math.MinInt64)
	for _, v := range values {
		vars := map[string]any{"v": v}
		if v >= 0 {
			got, err := renderWith(t, p, st, `{{ $r := readVarint (print (uvarint (get "v")) "x") }}{{ $r.value }}|{{ $r.n }}|{{ $r.rest }}`, vars)
			want := fmt.Sprintf("%d|%d|x", v, len(binary.AppendUvarint(nil, uint64(v))))
			if err != nil || got != want {
				t.Errorf("uvarint %d: %q, %v; want %q", v, got, err, want)
			}
		}
		got, err := renderWith(t, p, st, `{{ $r := readVarint (varint (get "v")) }}{{ $r.zigzag }}|{{ $r.n }}`, vars)
		want := fmt.Sprintf("%d|%d", v, len(binary.AppendVarint(nil, v)))
		if err != nil || got != want {
			t.Errorf("varint %d: %q, %v; want %q", v, got, err, want)
		}
	}
	// The largest uvarint is not an int64: it stays exact as a uint64.
	if got := renderFunc(t, "readVarint", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01").(map[string]any)["value"]; got != uint64(math.MaxUint64) {
		t.Errorf("readVarint of 2^64-1 = %#v", got)
	}
	bad := map[string]string{
		`lenPrefix 3 "x"`:                             "a length is 1, 2 or 4 bytes, not 3",
		`lenPrefixRead 2 "\x00"`:                      "1 bytes are shorter than the 2-byte length",
		`lenPrefixRead 1 "\x05ab"`:                    "the length says 5 bytes, 2 follow",
		`uvarint -1`:                                  "is negative",
		`readVarint ""`:                               "0 bytes end inside a varint",
		`readVarint "\x80\x80"`:                       "2 bytes end inside a varint",
		`readVarint (repeat 11 "\xff")`:               "overflows 64 bits",
		`readVarint (print (repeat 9 "\xff") "\x02")`: "overflows 64 bits",
		`hexdec "abc"`:                                "hexdec: encoding/hex: odd length hex string",
		`hexdec "zz"`:                                 "invalid byte",
		`mustB64dec "!!"`:                             "is not base64",
		`bytesLen 5`:                                  "int is not bytes",
		`hexenc nil`:                                  "no bytes (nil)",
	}
	for src, want := range bad {
		if _, err := renderWith(t, p, st, `{{ `+src+` }}`, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", src, err, want)
		}
	}
	for src, want := range map[string]string{
		`{{ hexenc (hexdec "00 ff\n10") }}`:                      "00ff10",
		`{{ mustB64dec "aGk" }}{{ mustB64dec "-_8=" | hexenc }}`: "hifbff",
		`{{ bytesLen "é" }}`:                                     "2",
	} {
		if got, err := renderWith(t, p, st, src, nil); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", src, got, err, want)
		}
	}
}

// Builders charge what they build to the template budget: a frame over it
// fails with the budget error and allocates about the budget, not what
// was asked.
func TestProtocolFuncsBudget(t *testing.T) {
	p := NewProgram()
	half := strings.Repeat("x", DefaultBudget/2+1)
	tests := map[string]string{
		`{{ $x := hexenc (get "half") }}`: "template budget: hexenc would produce",
		`{{ $x := mqttPublish "t" (get "half") 0 }}{{ $y := mqttPublish "t" (get "half") 0 }}`: "template budget: mqttPublish would produce",
		`{{ $x := sioEvent "e" (get "half") }}`:                                                "template budget: sioEvent would produce",
		`{{ $x := sioDecode (print "42[\"e\",\"" (get "half") "\"]") }}`:                       "would produce",
		`{{ $x := mqttDecode (mqttSubscribe 1 (get "sixty") 0) }}`:                             "template budget: mqttDecode would produce",
		`{{ $x := lenPrefix 4 (get "half") }}{{ $y := lenPrefix 4 (get "half") }}`:             "template budget: lenPrefix would produce",
	}
	for src, want := range tests {
		if _, err := renderWith(t, p, NewStore(Identity{}), src, map[string]any{"half": half, "sixty": half[:60000]}); !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want ErrLimit saying %q", src, err, want)
		}
	}
}

// The readers of frames cost what they build, not a multiple of the frame:
// a classifier names a frame as large as the read limit, and decoding a
// large PUBLISH or a text event does not copy it.
func TestProtocolReadersOfLargeFrames(t *testing.T) {
	p := NewProgram()
	big := strings.Repeat("y", 1<<20-64)
	vars := map[string]any{
		"event":   `42["big","` + big + `"]`,
		"numbers": `42["nums",[` + strings.Repeat("1,", 100_000) + `1]]`,
		"publish": "\x30\xff\xff\x3f\x00\x01t" + strings.Repeat("p", 0xfffff-3),
		"text":    `42["text","` + big[:300_000] + `"]`,
	}
	tests := map[string]string{
		`{{ sioType (get "event") }}`:                                               "event:big",
		`{{ sioType (get "numbers") }}`:                                             "event:nums",
		`{{ mqttType (get "publish") }} {{ mqttPacketID (get "publish") }}`:         "publish 0",
		`{{ $p := mqttDecode (get "publish") }}{{ $p.topic }} {{ len $p.payload }}`: "t 1048572",
		`{{ $p := sioDecode (get "text") }}{{ len (index $p.args 0) }}`:             "300000",
	}
	for src, want := range tests {
		if got, err := renderWith(t, p, NewStore(Identity{}), src, vars); err != nil || got != want {
			t.Errorf("%s = %.40q, %v; want %q", src, got, err, want)
		}
	}
}

// uniqueID never repeats across koi; seqID counts per name; nextPacketID
// wraps from 65535 to 1, never 0.
func TestKoiIDs(t *testing.T) {
	p := NewProgram()
	seen := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	tx := compileOne(t, p, `{{ uniqueID }}`)
	for k := range 12 {
		st := NewStore(Identity{Index: k})
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 50 {
					id, err := p.Render(context.Background(), &Env{Store: st}, tx, nil)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if seen[id] {
						t.Errorf("uniqueID %s returned twice", id)
					}
					seen[id] = true
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if len(seen) != 12*4*50 {
		t.Errorf("%d unique ids, want %d", len(seen), 12*4*50)
	}
	st := NewStore(Identity{Index: 1})
	got, err := renderWith(t, p, st, `{{ seqID "a" }}{{ seqID "a" }}{{ seqID "b" }}{{ seqID "a" }}`, nil)
	if err != nil || got != "1213" {
		t.Errorf("seqID: %q, %v", got, err)
	}
	for i := 2; i < maxSeqNames; i++ {
		if _, err := st.SeqID(fmt.Sprint("s", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.SeqID("one too many"); err == nil || !strings.Contains(err.Error(), "already counts 256 sequences") {
		t.Errorf("sequence %d: err = %v", maxSeqNames+1, err)
	}
	if _, err := st.SeqID("a"); err != nil {
		t.Errorf("an existing sequence still counts: %v", err)
	}
	for _, name := range []string{"", strings.Repeat("n", maxSeqName+1)} {
		if _, err := renderWith(t, p, st, `{{ seqID (get "n") }}`, map[string]any{"n": name}); err == nil {
			t.Errorf("seqID of a %d-byte name: no error", len(name))
		}
	}
	first := st.NextPacketID()
	if first != 1 {
		t.Errorf("first packet id %d", first)
	}
	for i := 2; i <= 65535; i++ {
		if id := st.NextPacketID(); id != i {
			t.Fatalf("packet id %d, want %d", id, i)
		}
	}
	if id := st.NextPacketID(); id != 1 {
		t.Errorf("after 65535: %d, want 1", id)
	}
	if _, err := NewProgram().Render(context.Background(), &Env{}, compileOne(t, NewProgram(), `{{ uniqueID }}`), nil); err == nil {
		t.Error("uniqueID without a koi store: no error")
	}
}

// The decoders return errors, never panic, on any input; what they accept
// is consistent between them.
func FuzzMQTTDecode(f *testing.F) {
	for _, h := range []string{"20020000", "9004000701 80", "32090003612f62000a6869", "d000", "10140004 4d51545404c2000a000161000175000270 77", "8208000a0003612f6201", "30ffffff7f", "f000", ""} {
		raw, _ := hex.DecodeString(strings.ReplaceAll(h, " ", ""))
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := string(data)
		p, err := parseMQTT(s)
		typ := renderFunc(t, "mqttType", s)
		pid := renderFunc(t, "mqttPacketID", s)
		if err != nil {
			return
		}
		if typ != p["type"] || pid != p["pid"] {
			t.Fatalf("mqttType %v, mqttPacketID %v, but decode says %v %v", typ, pid, p["type"], p["pid"])
		}
		if n := p["len"].(int); n < 2 || n > len(s) || p["rest"].(string) != s[n:] {
			t.Fatalf("len %d, rest %q of %d bytes", n, p["rest"], len(s))
		}
	})
}

func FuzzSocketIODecode(f *testing.F) {
	for _, s := range []string{`0{"sid":"x"}`, "2probe", `42["chat",{"a":1}]`, `42/room,12["e",1]`, "431[]", `451-["u",{}]`, "40", "4x", `44{"message":"m"}`} {
		f.Add(s)
	}
	p := NewProgram()
	f.Fuzz(func(t *testing.T, s string) {
		pk, err := parseSIO(s, true)
		typ := renderFunc(t, "sioType", s)
		if err != nil {
			if typ != "" {
				t.Fatalf("sioType %q of a packet sioDecode refuses (%v)", typ, err)
			}
			return
		}
		if typ != pk.typ {
			t.Fatalf("sioType %q, decode %q", typ, pk.typ)
		}
		if pk.sio == 2 && pk.nsp == "/" && pk.id < 0 {
			// an event rebuilt from what it decoded to decodes the same
			st := NewStore(Identity{})
			again, err := p.Render(context.Background(), &Env{Store: st, Vars: map[string]any{"e": pk.event, "a": pk.args}}, compileOne(t, p, `{{ $l := prepend (get "a") (get "e") }}{{ toJson (sioDecode (print "42" (toJson $l))).args }}|{{ toJson (get "a") }}`), nil)
			if err != nil {
				t.Fatal(err)
			}
			if a, b, _ := strings.Cut(again, "|"); a != b {
				t.Fatalf("args %s came back as %s", b, a)
			}
		}
	})
}

func FuzzFraming(f *testing.F) {
	f.Add([]byte("\x02hi"), uint8(1))
	f.Add([]byte("\xac\x02"), uint8(2))
	f.Add([]byte("\x00\x00\x00\x05abc"), uint8(4))
	f.Fuzz(func(t *testing.T, data []byte, w uint8) {
		s := string(data)
		if r, ok := renderFunc(t, "lenPrefixRead", int(w), s).(map[string]any); ok {
			n := r["len"].(int)
			if len(r["body"].(string)) != n || int(w)+n+len(r["rest"].(string)) != len(s) {
				t.Fatalf("lenPrefixRead %d %q = %v", w, s, r)
			}
		}
		r, ok := renderFunc(t, "readVarint", s).(map[string]any)
		v, n := binary.Uvarint(data)
		if ok != (n > 0) {
			t.Fatalf("readVarint ok=%v, binary.Uvarint n=%d", ok, n)
		}
		if ok && (r["n"] != n || fmt.Sprint(r["value"]) != fmt.Sprint(v)) {
			t.Fatalf("readVarint %v, binary.Uvarint %d %d", r, v, n)
		}
		if h, ok := renderFunc(t, "hexdec", s).(string); ok {
			if _, err := hex.DecodeString(strings.Join(strings.Fields(s), "")); err != nil {
				t.Fatalf("hexdec accepted %q: %q", s, h)
			}
		}
		renderFunc(t, "mustB64dec", s)
	})
}

// What naming, reading and building a frame costs per call, as a
// classifier or a request renders it (run with -bench Protocol -benchmem).
func BenchmarkProtocolFuncs(b *testing.B) {
	p := NewProgram()
	publish := "\x32\x6a\x00\x08room/abc\x00\x2a" + strings.Repeat("p", 96)
	event := `42["said",{"room":"abc","text":"` + strings.Repeat("t", 160) + `","sent_at":1764760000000}]`
	for _, bb := range []struct {
		name, src string
		data      any
	}{
		{"mqttType", `{{ mqttType . }}`, publish},
		{"mqttPacketID", `{{ mqttPacketID . }}`, publish},
		{"mqttDecode", `{{ (mqttDecode .).topic }}`, publish},
		{"sioType", `{{ sioType . }}`, event},
		{"sioDecode", `{{ (index (sioDecode .).args 0).room }}`, event},
		{"mqttPublish", `{{ mqttPublish "room/abc" "hello there" 1 42 }}`, nil},
		{"sioEvent", `{{ sioEvent "say" (dict "room" "abc" "text" "hello there") }}`, nil},
		{"nextPacketID", `{{ nextPacketID }}`, nil},
	} {
		b.Run(bb.name, func(b *testing.B) {
			tx, err := p.compile(bb.src, "bench")
			if err != nil {
				b.Fatal(err)
			}
			env := &Env{Store: NewStore(Identity{})}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Render(context.Background(), env, tx, bb.data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
