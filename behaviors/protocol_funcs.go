package behaviors

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"text/template"
)

// Protocol helpers: the koi functions that build and read the frames of
// real-time protocols a template alone handles clumsily (length prefixes,
// varints, Engine.IO/Socket.IO text packets, MQTT 3.1.1 packets) and the
// ids those protocols need. Binary results are raw bytes in a Go string,
// for a ws request with "encoding": "raw"; binary frames arrive as the
// same kind of string, so a decoder reads `.` directly.
//
// Every function charges what it builds to the execution's byte budget
// before it builds it, and every decoder returns an error (never panics)
// on input that is not what it reads.

// protocolFuncDocs documents the protocol helpers; KoiFuncs lists them
// after the other koi functions.
var protocolFuncDocs = []FuncDoc{
	{"lenPrefix", "lenPrefix N BYTES", "BYTES preceded by their length as an N-byte big-endian number (N is 1, 2 or 4); an error when the length does not fit in N bytes."},
	{"lenPrefixRead", "lenPrefixRead N BYTES", "Reads one length-prefixed field from BYTES: a dictionary with .len (the length), .body (the field) and .rest (the bytes after it); an error when BYTES are shorter than the prefix says."},
	{"uvarint", "uvarint N", "N (0 or more) as an unsigned LEB128 varint (protobuf's uint64 encoding)."},
	{"varint", "varint N", "N as a zigzag varint (protobuf's sint64 encoding, Go's binary.PutVarint): small negative numbers stay short."},
	{"readVarint", "readVarint BYTES", "Reads the varint at the start of BYTES: a dictionary with .value (as unsigned), .zigzag (as a zigzag-encoded signed number), .n (bytes read) and .rest; an error when BYTES do not start with a complete varint."},
	{"hexenc", "hexenc BYTES", "BYTES as lowercase hexadecimal."},
	{"hexdec", "hexdec HEX", "The bytes HEX spells (whitespace between digits is ignored); an error when HEX is not hexadecimal. Unlike sprig's b64dec, which returns the error text as if it were the result."},
	{"mustB64dec", "mustB64dec B64", "The bytes of base64 B64 (standard or URL alphabet, padded or not); an error when it is not base64."},
	{"bytesLen", "bytesLen BYTES", "The length of BYTES in bytes."},
	{"sioEvent", "sioEvent NAME DATA…", "A Socket.IO v4 event packet on the main namespace as an Engine.IO message: 42[\"NAME\",DATA…], each DATA as JSON (a string is a JSON string; use fromJson for a JSON document)."},
	{"sioEventNs", "sioEventNs NSP NAME DATA…", "An event packet on namespace NSP (which starts with /): 42/NSP,[\"NAME\",DATA…]."},
	{"sioAckEvent", "sioAckEvent ID NAME DATA…", "An event packet that asks for an acknowledgement with id ID: 42ID[\"NAME\",DATA…] (the server answers 43ID[…])."},
	{"sioAck", "sioAck ID DATA…", "The acknowledgement of the server's event ID: 43ID[DATA…]."},
	{"sioDecode", "sioDecode TEXT", "Reads an Engine.IO v4 / Socket.IO v4 text packet: a dictionary with .type (as sioType), .eio (Engine.IO packet type, 0–6), .sio (Socket.IO packet type, -1 when it is not a Socket.IO packet), .nsp (namespace, \"/\" by default), .id (ack id, -1 when none), .event, .args (the event's or ack's arguments), .data (the open/connect/connect_error payload, or a ping's text); an error when TEXT is not such a packet."},
	{"sioType", "sioType TEXT", "A stable name for a frame classifier: open, close, ping, pong, upgrade, noop, connect, disconnect, event:NAME, ack, connect_error, binary_event:NAME, binary_ack, or message (an Engine.IO message that is not Socket.IO); \"\" when TEXT is not an Engine.IO packet (never an error, so a classifier can try it on any frame)."},
	{"mqttConnect", "mqttConnect CLIENTID KEEPALIVE [USER [PASS]]", "An MQTT 3.1.1 CONNECT packet (clean session, KEEPALIVE seconds 0–65535, optional user name and password)."},
	{"mqttSubscribe", "mqttSubscribe PID TOPIC QOS", "A SUBSCRIBE packet with packet id PID (1–65535) for one topic filter at QOS (0–2)."},
	{"mqttUnsubscribe", "mqttUnsubscribe PID TOPIC", "An UNSUBSCRIBE packet for one topic filter."},
	{"mqttPublish", "mqttPublish TOPIC PAYLOAD QOS [PID]", "A PUBLISH packet of PAYLOAD (bytes) to TOPIC at QOS (0–2); QOS 1 and 2 need a packet id PID (1–65535), QOS 0 has none."},
	{"mqttPuback", "mqttPuback PID", "The PUBACK of the server's QoS 1 PUBLISH PID."},
	{"mqttPingreq", "mqttPingreq", "A PINGREQ packet."},
	{"mqttDisconnect", "mqttDisconnect", "A DISCONNECT packet."},
	{"mqttDecode", "mqttDecode BYTES", "Reads the MQTT 3.1.1 packet at the start of BYTES: a dictionary with .type (as mqttType), .flags, .pid (0 when none), .topic, .payload, .qos, .rc (CONNACK's return code, SUBACK's first), .len (bytes of the packet) and .rest (bytes after it, for frames carrying several packets), plus .dup .retain (PUBLISH), .session_present (CONNACK), .codes (SUBACK), .topics (SUBSCRIBE, UNSUBSCRIBE: each with .topic .qos), .client_id .keepalive .username .password (CONNECT); an error when BYTES do not start with a complete, well-formed packet."},
	{"mqttType", "mqttType BYTES", "The type of the MQTT packet at the start of BYTES for a frame classifier: connect, connack, publish, puback, pubrec, pubrel, pubcomp, subscribe, suback, unsubscribe, unsuback, pingreq, pingresp or disconnect; \"\" when BYTES do not start with a complete packet (never an error)."},
	{"mqttPacketID", "mqttPacketID BYTES", "The packet id of the MQTT packet at the start of BYTES, 0 when it has none or is not a packet (so it can be compared in an await's when)."},
	{"uniqueID", "uniqueID", "An id no other call in the run returns: \"KOI-N\", the koi's index and its own counter."},
	{"seqID", "seqID NAME", "The koi's next number in the sequence NAME: 1, 2, 3, … (at most 256 names of up to 64 bytes per koi)."},
	{"nextPacketID", "nextPacketID", "The koi's next MQTT-style packet id: 1 to 65535, then 1 again."},
}

// funcExample is a template with the output it renders, shown in
// FUNCTIONS.md and run by a test.
type funcExample struct{ Src, Out string }

// protocolExamples shows each protocol helper at work. Binary results are
// shown through hexenc.
var protocolExamples = []funcExample{
	{`{{ hexenc (lenPrefix 2 "hi") }}`, `00026869`},
	{`{{ $f := lenPrefixRead 1 (hexdec "02686921") }}{{ $f.len }} {{ $f.body }} {{ $f.rest }}`, `2 hi !`},
	{`{{ hexenc (uvarint 300) }} {{ hexenc (varint -3) }}`, `ac02 05`},
	{`{{ $v := readVarint (hexdec "ac02ff") }}{{ $v.value }} {{ $v.n }} {{ hexenc $v.rest }}`, `300 2 ff`},
	{`{{ hexenc "MQTT" }} {{ hexdec "4d 51 54 54" }}`, `4d515454 MQTT`},
	{`{{ mustB64dec "aGk=" }} {{ bytesLen (hexdec "c000") }}`, `hi 2`},
	{`{{ sioEvent "chat" (dict "text" "hi") 7 }}`, `42["chat",{"text":"hi"},7]`},
	{`{{ sioEventNs "/admin" "kick" "u1" }}`, `42/admin,["kick","u1"]`},
	{`{{ sioAckEvent 12 "join" "room1" }} {{ sioAck 5 "ok" }}`, `4212["join","room1"] 435["ok"]`},
	{`{{ $p := sioDecode "42/chat,7[\"said\",{\"text\":\"hi\"}]" }}{{ $p.event }} {{ $p.nsp }} {{ $p.id }} {{ (index $p.args 0).text }}`, `said /chat 7 hi`},
	{`{{ sioType "2" }} {{ sioType "40{\"sid\":\"x\"}" }} {{ sioType "42[\"said\",1]" }} {{ sioType "431[]" }}`, `ping connect event:said ack`},
	{`{{ hexenc (mqttConnect "koi-1" 30) }}`, `101100044d5154540402001e00056b6f692d31`},
	{`{{ hexenc (mqttSubscribe 1 "room/#" 1) }}`, `820b00010006726f6f6d2f2301`},
	{`{{ hexenc (mqttPublish "a/b" "hi" 1 10) }}`, `32090003612f62000a6869`},
	{`{{ hexenc (mqttUnsubscribe 2 "a") }}`, `a2050002000161`},
	{`{{ hexenc (mqttPuback 10) }} {{ hexenc mqttPingreq }} {{ hexenc mqttDisconnect }}`, `4002000a c000 e000`},
	{`{{ $p := mqttDecode (hexdec "3209000361 2f62000a6869") }}{{ $p.type }} {{ $p.topic }} {{ $p.payload }} {{ $p.qos }} {{ $p.pid }}`, `publish a/b hi 1 10`},
	{`{{ mqttType (hexdec "20020000") }} {{ mqttPacketID (hexdec "9003000701") }}`, `connack 7`},
	{`{{ uniqueID }} {{ uniqueID }} {{ seqID "msg" }} {{ seqID "msg" }} {{ nextPacketID }}`, `4-1 4-2 1 2 1`},
}

// ProtocolDoc renders the protocol helpers' examples for FUNCTIONS.md.
func protocolDoc() string {
	var b strings.Builder
	b.WriteString(`
## Protocol helper examples

Binary helpers return raw bytes; send them with ` + "`\"encoding\": \"raw\"`" + ` in a ws request. A binary
frame's ` + "`.`" + ` is its raw bytes, so ` + "`mqttType .`, `mqttDecode .`" + ` read it directly. Below, binary
results are shown through ` + "`hexenc`" + ` (the koi's index is 4).

`)
	for _, e := range protocolExamples {
		fmt.Fprintf(&b, "    %s\n    → %s\n\n", e.Src, e.Out)
	}
	return b.String()
}

// Bounds of the protocol helpers' inputs.
const (
	// maxSeqNames is the number of sequences seqID keeps per koi.
	maxSeqNames = 256
	// maxSeqName is the longest sequence name.
	maxSeqName = 64
	// mqttMaxRemaining is MQTT's largest remaining length (4 bytes of 7 bits).
	mqttMaxRemaining = 268_435_455
	// maxAckID bounds Socket.IO ack ids (JavaScript's safe integers).
	maxAckID = 1<<53 - 1
)

// addProtocolFuncs puts the protocol helpers into m, bound to b.
func addProtocolFuncs(m template.FuncMap, b *binding) {
	st := func() (*Store, error) { return b.store() }
	m["lenPrefix"] = func(n any, data any) (string, error) {
		w, err := prefixWidth("lenPrefix", n)
		if err != nil {
			return "", err
		}
		s, err := bytesArg("lenPrefix", data)
		if err != nil {
			return "", err
		}
		if int64(len(s)) > int64(1)<<(8*w)-1 {
			return "", fmt.Errorf("lenPrefix: %d bytes do not fit a %d-byte length", len(s), w)
		}
		if err := b.charge("lenPrefix", int64(64+w+len(s))); err != nil {
			return "", err
		}
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(s)))
		return string(hdr[4-w:]) + s, nil
	}
	m["lenPrefixRead"] = func(n any, data any) (map[string]any, error) {
		w, err := prefixWidth("lenPrefixRead", n)
		if err != nil {
			return nil, err
		}
		s, err := bytesArg("lenPrefixRead", data)
		if err != nil {
			return nil, err
		}
		if len(s) < w {
			return nil, fmt.Errorf("lenPrefixRead: %d bytes are shorter than the %d-byte length", len(s), w)
		}
		var hdr [4]byte
		copy(hdr[4-w:], s[:w])
		l := int64(binary.BigEndian.Uint32(hdr[:]))
		if l > int64(len(s)-w) {
			return nil, fmt.Errorf("lenPrefixRead: the length says %d bytes, %d follow", l, len(s)-w)
		}
		if err := b.charge("lenPrefixRead", 3*64); err != nil {
			return nil, err
		}
		return map[string]any{"len": int(l), "body": s[w : w+int(l)], "rest": s[w+int(l):]}, nil
	}
	m["uvarint"] = func(n any) (string, error) {
		v, err := intArg64("uvarint", n)
		if err != nil {
			return "", err
		}
		if v < 0 {
			return "", fmt.Errorf("uvarint: %d is negative (use varint)", v)
		}
		if err := b.charge("uvarint", 64+binary.MaxVarintLen64); err != nil {
			return "", err
		}
		return string(binary.AppendUvarint(nil, uint64(v))), nil
	}
	m["varint"] = func(n any) (string, error) {
		v, err := intArg64("varint", n)
		if err != nil {
			return "", err
		}
		if err := b.charge("varint", 64+binary.MaxVarintLen64); err != nil {
			return "", err
		}
		return string(binary.AppendVarint(nil, v)), nil
	}
	m["readVarint"] = func(data any) (map[string]any, error) {
		s, err := bytesArg("readVarint", data)
		if err != nil {
			return nil, err
		}
		v, n := readUvarint(s)
		switch {
		case n == 0:
			return nil, fmt.Errorf("readVarint: %d bytes end inside a varint", len(s))
		case n < 0:
			return nil, errors.New("readVarint: the varint overflows 64 bits")
		}
		if err := b.charge("readVarint", 4*64); err != nil {
			return nil, err
		}
		zz := int64(v >> 1)
		if v&1 != 0 {
			zz = ^zz
		}
		return map[string]any{"value": unsignedValue(v), "zigzag": zz, "n": n, "rest": s[n:]}, nil
	}
	m["hexenc"] = func(data any) (string, error) {
		s, err := bytesArg("hexenc", data)
		if err != nil {
			return "", err
		}
		if err := b.charge("hexenc", satAdd(64, satMul(2, int64(len(s))))); err != nil {
			return "", err
		}
		return hex.EncodeToString([]byte(s)), nil
	}
	m["hexdec"] = func(data any) (string, error) {
		s, err := bytesArg("hexdec", data)
		if err != nil {
			return "", err
		}
		if err := b.charge("hexdec", int64(64+len(s))); err != nil {
			return "", err
		}
		s = strings.Join(strings.Fields(s), "")
		out, err := hex.DecodeString(s)
		if err != nil {
			return "", fmt.Errorf("hexdec: %w", err)
		}
		return string(out), nil
	}
	m["mustB64dec"] = func(data any) (string, error) {
		s, err := bytesArg("mustB64dec", data)
		if err != nil {
			return "", err
		}
		if err := b.charge("mustB64dec", int64(64+len(s))); err != nil {
			return "", err
		}
		s = strings.TrimSpace(s)
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if out, err := enc.DecodeString(s); err == nil {
				return string(out), nil
			}
		}
		return "", fmt.Errorf("mustB64dec: %s is not base64", quote(clipTo(s, 32)))
	}
	m["bytesLen"] = func(data any) (int, error) {
		s, err := bytesArg("bytesLen", data)
		return len(s), err
	}
	m["sioEvent"] = func(name string, args ...any) (string, error) {
		return sioEventPacket(b, "sioEvent", "/", -1, name, args)
	}
	m["sioEventNs"] = func(nsp, name string, args ...any) (string, error) {
		if !strings.HasPrefix(nsp, "/") || strings.ContainsAny(nsp, ",") {
			return "", fmt.Errorf("sioEventNs: namespace %s must start with / and hold no comma", quote(clipTo(nsp, 32)))
		}
		return sioEventPacket(b, "sioEventNs", nsp, -1, name, args)
	}
	m["sioAckEvent"] = func(id any, name string, args ...any) (string, error) {
		n, err := ackIDArg("sioAckEvent", id)
		if err != nil {
			return "", err
		}
		return sioEventPacket(b, "sioAckEvent", "/", n, name, args)
	}
	m["sioAck"] = func(id any, args ...any) (string, error) {
		n, err := ackIDArg("sioAck", id)
		if err != nil {
			return "", err
		}
		body, err := jsonArray(b, "sioAck", args)
		if err != nil {
			return "", err
		}
		return "43" + strconv.FormatInt(n, 10) + body, nil
	}
	m["sioDecode"] = func(text any) (map[string]any, error) {
		s, err := bytesArg("sioDecode", text)
		if err != nil {
			return nil, err
		}
		// the dictionary's 10 entries and the decoded payload
		if err := b.charge("sioDecode", satAdd(10*64, jsonDecodeBound(s))); err != nil {
			return nil, err
		}
		p, err := parseSIO(s, true)
		if err != nil {
			return nil, fmt.Errorf("sioDecode: %w", err)
		}
		return p.dict(), nil
	}
	m["sioType"] = func(text any) (string, error) {
		s, err := bytesArg("sioType", text)
		if err != nil {
			return "", nil // a JSON object or list is not a packet either
		}
		p, err := parseSIO(s, false)
		if err != nil {
			return "", nil
		}
		if err := b.charge("sioType", int64(64+len(p.typ))); err != nil {
			return "", err
		}
		return p.typ, nil
	}
	m["mqttConnect"] = func(clientID string, keepalive any, auth ...string) (string, error) {
		ka, err := rangedArg("mqttConnect", "keepalive", keepalive, 0, 65535)
		if err != nil {
			return "", err
		}
		if len(auth) > 2 {
			return "", fmt.Errorf("mqttConnect: %d arguments after the keepalive, want at most a user name and a password", len(auth))
		}
		flags := byte(0x02) // clean session
		var body []byte
		body = append(body, 0, 4, 'M', 'Q', 'T', 'T', 4, 0, byte(ka>>8), byte(ka))
		var err2 error
		if body, err2 = appendMQTTString(body, "mqttConnect", "client id", clientID); err2 != nil {
			return "", err2
		}
		if len(auth) > 0 {
			flags |= 0x80
			if body, err2 = appendMQTTString(body, "mqttConnect", "user name", auth[0]); err2 != nil {
				return "", err2
			}
		}
		if len(auth) > 1 {
			flags |= 0x40
			if body, err2 = appendMQTTString(body, "mqttConnect", "password", auth[1]); err2 != nil {
				return "", err2
			}
		}
		body[7] = flags
		return mqttPacket(b, "mqttConnect", 0x10, body)
	}
	m["mqttSubscribe"] = func(pid any, topic string, qos any) (string, error) {
		id, err := rangedArg("mqttSubscribe", "packet id", pid, 1, 65535)
		if err != nil {
			return "", err
		}
		q, err := rangedArg("mqttSubscribe", "qos", qos, 0, 2)
		if err != nil {
			return "", err
		}
		if topic == "" {
			return "", errors.New("mqttSubscribe: empty topic filter")
		}
		body, err := appendMQTTString([]byte{byte(id >> 8), byte(id)}, "mqttSubscribe", "topic filter", topic)
		if err != nil {
			return "", err
		}
		return mqttPacket(b, "mqttSubscribe", 0x82, append(body, byte(q)))
	}
	m["mqttUnsubscribe"] = func(pid any, topic string) (string, error) {
		id, err := rangedArg("mqttUnsubscribe", "packet id", pid, 1, 65535)
		if err != nil {
			return "", err
		}
		if topic == "" {
			return "", errors.New("mqttUnsubscribe: empty topic filter")
		}
		body, err := appendMQTTString([]byte{byte(id >> 8), byte(id)}, "mqttUnsubscribe", "topic filter", topic)
		if err != nil {
			return "", err
		}
		return mqttPacket(b, "mqttUnsubscribe", 0xa2, body)
	}
	m["mqttPublish"] = func(topic string, payload any, qos any, pid ...any) (string, error) {
		q, err := rangedArg("mqttPublish", "qos", qos, 0, 2)
		if err != nil {
			return "", err
		}
		data, err := bytesArg("mqttPublish", payload)
		if err != nil {
			return "", err
		}
		if topic == "" || strings.ContainsAny(topic, "+#") {
			return "", fmt.Errorf("mqttPublish: topic %s must be non-empty and hold no wildcard", quote(clipTo(topic, 32)))
		}
		if len(pid) > 1 {
			return "", fmt.Errorf("mqttPublish: %d packet ids, want one", len(pid))
		}
		if err := b.charge("mqttPublish", int64(64+len(topic)+len(data))); err != nil {
			return "", err
		}
		body, err := appendMQTTString(nil, "mqttPublish", "topic", topic)
		if err != nil {
			return "", err
		}
		switch {
		case q > 0 && len(pid) == 0:
			return "", fmt.Errorf("mqttPublish: qos %d needs a packet id", q)
		case q > 0:
			id, err := rangedArg("mqttPublish", "packet id", pid[0], 1, 65535)
			if err != nil {
				return "", err
			}
			body = append(body, byte(id>>8), byte(id))
		}
		return mqttPacket(b, "mqttPublish", 0x30|byte(q)<<1, append(body, data...))
	}
	m["mqttPuback"] = func(pid any) (string, error) {
		id, err := rangedArg("mqttPuback", "packet id", pid, 1, 65535)
		if err != nil {
			return "", err
		}
		return mqttPacket(b, "mqttPuback", 0x40, []byte{byte(id >> 8), byte(id)})
	}
	m["mqttPingreq"] = func() (string, error) { return mqttPacket(b, "mqttPingreq", 0xc0, nil) }
	m["mqttDisconnect"] = func() (string, error) { return mqttPacket(b, "mqttDisconnect", 0xe0, nil) }
	m["mqttDecode"] = func(data any) (map[string]any, error) {
		s, err := bytesArg("mqttDecode", data)
		if err != nil {
			return nil, err
		}
		// the dictionary, and for SUBACK, SUBSCRIBE and UNSUBSCRIBE a list
		// slot (and a dictionary for a topic) per byte of the packet at
		// most; a payload or a topic is a part of BYTES, not a copy
		n := int64(24 * 64)
		if typ, _, body, _, err := mqttHeader(s); err == nil && typ >= 8 && typ <= 10 {
			n = satAdd(n, satMul(80, int64(len(body))))
		}
		if err := b.charge("mqttDecode", n); err != nil {
			return nil, err
		}
		p, err := parseMQTT(s)
		if err != nil {
			return nil, fmt.Errorf("mqttDecode: %w", err)
		}
		return p, nil
	}
	m["mqttType"] = func(data any) (string, error) {
		s, err := bytesArg("mqttType", data)
		if err != nil {
			return "", nil
		}
		typ, _, _, _, err := mqttHeader(s)
		if err != nil {
			return "", nil
		}
		return mqttTypeNames[typ], nil
	}
	m["mqttPacketID"] = func(data any) (int, error) {
		s, err := bytesArg("mqttPacketID", data)
		if err != nil {
			return 0, nil
		}
		return mqttPacketID(s), nil
	}
	m["uniqueID"] = func() (string, error) {
		s, err := st()
		if err != nil {
			return "", err
		}
		if err := b.charge("uniqueID", 64); err != nil {
			return "", err
		}
		return s.UniqueID(), nil
	}
	m["seqID"] = func(name string) (int64, error) {
		s, err := st()
		if err != nil {
			return 0, err
		}
		return s.SeqID(name)
	}
	m["nextPacketID"] = func() (int, error) {
		s, err := st()
		if err != nil {
			return 0, err
		}
		return s.NextPacketID(), nil
	}
}

// bytesArg accepts what a template holds as bytes: a string (a binary
// frame's Value is one), any string type (a JSON number keeps its text),
// or a byte slice.
func bytesArg(fn string, v any) (string, error) {
	switch s := v.(type) {
	case string:
		return s, nil
	case []byte:
		return string(s), nil
	case nil:
		return "", fmt.Errorf("%s: no bytes (nil)", fn)
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.String {
		return rv.String(), nil
	}
	if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
		return string(rv.Bytes()), nil
	}
	return "", fmt.Errorf("%s: %T is not bytes or a string", fn, v)
}

// intArg64 accepts an integer however a template holds it: a Go integer,
// a whole float, a JSON number or a decimal string.
func intArg64(fn string, v any) (int64, error) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if rv.Uint() > math.MaxInt64 {
			return 0, fmt.Errorf("%s: %d is too large", fn, rv.Uint())
		}
		return int64(rv.Uint()), nil
	case reflect.Float32, reflect.Float64:
		f := rv.Float()
		if f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
			return 0, fmt.Errorf("%s: %v is not a whole number", fn, f)
		}
		return int64(f), nil
	case reflect.String:
		n, err := strconv.ParseInt(strings.TrimSpace(rv.String()), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %s is not a whole number", fn, quote(clipTo(rv.String(), 32)))
		}
		return n, nil
	}
	return 0, fmt.Errorf("%s: %T is not a number", fn, v)
}

// rangedArg is an integer argument within [lo, hi].
func rangedArg(fn, what string, v any, lo, hi int64) (int64, error) {
	n, err := intArg64(fn, v)
	if err != nil {
		return 0, fmt.Errorf("%s (%s)", err, what)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%s: %s %d is outside %d..%d", fn, what, n, lo, hi)
	}
	return n, nil
}

func prefixWidth(fn string, v any) (int, error) {
	n, err := intArg64(fn, v)
	if err != nil {
		return 0, err
	}
	if n != 1 && n != 2 && n != 4 {
		return 0, fmt.Errorf("%s: a length is 1, 2 or 4 bytes, not %d", fn, n)
	}
	return int(n), nil
}

func ackIDArg(fn string, v any) (int64, error) { return rangedArg(fn, "ack id", v, 0, maxAckID) }

// unsignedValue is v as an int64 when it fits (what templates compare
// most easily), else as a uint64.
func unsignedValue(v uint64) any {
	if v <= math.MaxInt64 {
		return int64(v)
	}
	return v
}

// readUvarint is binary.Uvarint over a string (no copy).
func readUvarint(s string) (uint64, int) {
	var x uint64
	var sh uint
	for i := 0; i < len(s); i++ {
		if i == binary.MaxVarintLen64 {
			return 0, -(i + 1)
		}
		c := s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -(i + 1)
			}
			return x | uint64(c)<<sh, i + 1
		}
		x |= uint64(c&0x7f) << sh
		sh += 7
	}
	return 0, 0
}

// jsonArray encodes args as a JSON array, charging its bound first.
// Strings are not HTML-escaped: what the template gave is what is sent.
func jsonArray(b *binding, fn string, args []any) (string, error) {
	n := int64(64)
	for _, a := range args {
		n = satAdd(n, satAdd(shapeOf(a).jsonBound(), 1))
	}
	if err := b.charge(fn, n); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if args == nil {
		args = []any{}
	}
	if err := enc.Encode(args); err != nil {
		return "", fmt.Errorf("%s: %w", fn, err)
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

// sioEventPacket builds 42[/nsp,][id]["name",args…].
func sioEventPacket(b *binding, fn, nsp string, id int64, name string, args []any) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%s: empty event name", fn)
	}
	body, err := jsonArray(b, fn, append([]any{name}, args...))
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	sb.Grow(len(body) + len(nsp) + 24)
	sb.WriteString("42")
	if nsp != "/" {
		sb.WriteString(nsp)
		sb.WriteByte(',')
	}
	if id >= 0 {
		sb.WriteString(strconv.FormatInt(id, 10))
	}
	sb.WriteString(body)
	return sb.String(), nil
}

// sioPacket is a decoded Engine.IO / Socket.IO text packet.
type sioPacket struct {
	typ        string
	eio, sio   int
	nsp        string
	id         int64
	event      string
	args       []any
	data       any
	attachment int
}

func (p *sioPacket) dict() map[string]any {
	args := p.args
	if args == nil {
		args = []any{}
	}
	return map[string]any{"type": p.typ, "eio": p.eio, "sio": p.sio, "nsp": p.nsp, "id": p.id,
		"event": p.event, "args": args, "data": p.data, "attachments": p.attachment}
}

var eioTypes = [...]string{"open", "close", "ping", "pong", "message", "upgrade", "noop"}
var sioTypes = [...]string{"connect", "disconnect", "event", "ack", "connect_error", "binary_event", "binary_ack"}

// parseSIO reads an Engine.IO v4 text packet and, in a message, a
// Socket.IO v4 (protocol 5) packet:
//
//	<eio type>[<sio type>[<attachments>-][<nsp>,][<ack id>][<JSON>]]
//
// With full false it only names the packet: the JSON payload is checked
// (without building it) and only an event's name is read, so that a
// classifier costs no more than the frame, however large.
func parseSIO(s string, full bool) (*sioPacket, error) {
	if s == "" {
		return nil, errors.New("empty text is not an Engine.IO packet")
	}
	if s[0] < '0' || s[0] > '6' {
		return nil, fmt.Errorf("%s does not start with an Engine.IO packet type (0-6)", quote(clipTo(s, 32)))
	}
	p := &sioPacket{eio: int(s[0] - '0'), sio: -1, nsp: "/", id: -1}
	rest := s[1:]
	p.typ = eioTypes[p.eio]
	switch p.eio {
	case 0: // open: the handshake object
		if rest != "" {
			v, err := sioPayload(rest, full)
			if err != nil {
				return nil, fmt.Errorf("open packet: %w", err)
			}
			p.data = v
		}
		return p, nil
	case 4:
	default:
		if rest != "" {
			p.data = rest // "2probe"
		}
		return p, nil
	}
	if rest == "" || rest[0] < '0' || rest[0] > '6' {
		p.data = rest // a plain Engine.IO message
		return p, nil
	}
	p.sio = int(rest[0] - '0')
	rest = rest[1:]
	if p.sio == 5 || p.sio == 6 {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i > 6 || i == len(rest) || rest[i] != '-' {
			return nil, errors.New("binary packet without an attachment count (\"N-\")")
		}
		p.attachment, _ = strconv.Atoi(rest[:i])
		rest = rest[i+1:]
	}
	if strings.HasPrefix(rest, "/") {
		i := strings.IndexByte(rest, ',')
		if i < 0 {
			p.nsp, rest = rest, ""
		} else {
			p.nsp, rest = rest[:i], rest[i+1:]
		}
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i > 0 {
		id, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil || id > maxAckID {
			return nil, fmt.Errorf("ack id %s is too large", quote(clipTo(rest[:i], 32)))
		}
		p.id, rest = id, rest[i:]
	}
	var payload any
	if rest != "" {
		v, err := sioPayload(rest, full)
		if err != nil {
			return nil, fmt.Errorf("%s packet: %w", sioTypes[p.sio], err)
		}
		payload = v
	}
	switch p.sio {
	case 2, 5: // event: ["name", args…]
		arr, ok := payload.([]any)
		if !ok || len(arr) == 0 {
			return nil, errors.New("event packet without a [\"name\", …] payload")
		}
		name, ok := arr[0].(string)
		if !ok {
			return nil, fmt.Errorf("event name is %T, not a string", arr[0])
		}
		p.event, p.args = name, arr[1:]
		p.typ = sioTypes[p.sio] + ":" + name
	case 3, 6: // ack: [args…]
		arr, ok := payload.([]any)
		if !ok {
			return nil, errors.New("ack packet without a [ … ] payload")
		}
		if p.id < 0 {
			return nil, errors.New("ack packet without an ack id")
		}
		p.args = arr
		p.typ = sioTypes[p.sio]
	default: // connect, disconnect, connect_error: an optional object
		p.data = payload
		p.typ = sioTypes[p.sio]
	}
	return p, nil
}

// sioPayload decodes a packet's JSON payload, or with full false checks
// it and returns a stand-in: for an array, a list holding only its first
// element when that is a string (an event's name), else an empty list; for
// anything else nil.
func sioPayload(s string, full bool) (any, error) {
	if full {
		return decodeJSONValue(s)
	}
	if !json.Valid([]byte(s)) {
		return nil, errors.New("payload is not JSON")
	}
	dec := json.NewDecoder(strings.NewReader(s))
	if tok, _ := dec.Token(); tok != json.Delim('[') {
		return nil, nil
	}
	if tok, err := dec.Token(); err == nil {
		if name, ok := tok.(string); ok {
			return []any{name}, nil
		}
		return []any{tok}, nil
	}
	return []any{}, nil
}

// jsonDecodeBound bounds what decoding JSON text s (numbers as
// json.Number) allocates: a byte inside a string becomes at most two
// (the string's data, escapes only shrink), any other byte may start a
// value of 40 (an interface slot, a map entry, a json.Number header).
func jsonDecodeBound(s string) int64 {
	var n int64
	in, esc := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			esc = false
			n += 2
		case in && c == '\\':
			esc = true
			n += 2
		case c == '"':
			in = !in
			n += 40
		case in:
			n += 2
		default:
			n += 40
		}
	}
	return n
}

// decodeJSONValue decodes one JSON value (numbers as json.Number, as
// frames decode); anything after the value is refused.
func decodeJSONValue(s string) (any, error) {
	if !json.Valid([]byte(s)) {
		return nil, errors.New("payload is not JSON")
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("payload is not JSON: %w", err)
	}
	return v, nil
}

// mqttTypeNames are the MQTT 3.1.1 control packet types ("" reserved).
var mqttTypeNames = [16]string{"", "connect", "connack", "publish", "puback", "pubrec", "pubrel", "pubcomp",
	"subscribe", "suback", "unsubscribe", "unsuback", "pingreq", "pingresp", "disconnect", ""}

// mqttPacket frames body with the fixed header (type and flags, then the
// remaining length), charging the result first.
func mqttPacket(b *binding, fn string, first byte, body []byte) (string, error) {
	if len(body) > mqttMaxRemaining {
		return "", fmt.Errorf("%s: %d bytes are over MQTT's %d-byte packet limit", fn, len(body), mqttMaxRemaining)
	}
	if err := b.charge(fn, int64(64+len(body))); err != nil {
		return "", err
	}
	out := make([]byte, 0, 5+len(body))
	out = append(out, first)
	n := len(body)
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			c |= 0x80
		}
		out = append(out, c)
		if n == 0 {
			break
		}
	}
	return string(append(out, body...)), nil
}

func appendMQTTString(dst []byte, fn, what, s string) ([]byte, error) {
	if len(s) > 65535 {
		return nil, fmt.Errorf("%s: %s of %d bytes is over MQTT's 65535", fn, what, len(s))
	}
	dst = append(dst, byte(len(s)>>8), byte(len(s)))
	return append(dst, s...), nil
}

// mqttHeader reads the fixed header at the start of s: the packet type,
// its flags, the body (the remaining length's bytes) and the length of the
// whole packet.
func mqttHeader(s string) (typ int, flags byte, body string, total int, err error) {
	if s == "" {
		return 0, 0, "", 0, errors.New("no bytes")
	}
	typ, flags = int(s[0]>>4), s[0]&0x0f
	if mqttTypeNames[typ] == "" {
		return 0, 0, "", 0, fmt.Errorf("packet type %d is reserved", typ)
	}
	var n, sh int
	i := 1
	for ; ; i++ {
		if i > 4 {
			return 0, 0, "", 0, errors.New("remaining length longer than 4 bytes")
		}
		if i >= len(s) {
			return 0, 0, "", 0, fmt.Errorf("%d bytes end inside the fixed header", len(s))
		}
		c := s[i]
		n |= int(c&0x7f) << sh
		sh += 7
		if c < 0x80 {
			i++
			break
		}
	}
	if n > len(s)-i {
		return 0, 0, "", 0, fmt.Errorf("the %s packet says %d bytes follow its header, %d do", mqttTypeNames[typ], n, len(s)-i)
	}
	return typ, flags, s[i : i+n], i + n, nil
}

// mqttReader reads the fields of a packet body.
type mqttReader struct {
	s   string
	err error
}

func (r *mqttReader) u16(what string) int {
	if r.err != nil {
		return 0
	}
	if len(r.s) < 2 {
		r.err = fmt.Errorf("the body ends before the %s", what)
		return 0
	}
	v := int(r.s[0])<<8 | int(r.s[1])
	r.s = r.s[2:]
	return v
}

func (r *mqttReader) str(what string) string {
	n := r.u16(what + "'s length")
	if r.err != nil {
		return ""
	}
	if n > len(r.s) {
		r.err = fmt.Errorf("the %s says %d bytes, %d are left", what, n, len(r.s))
		return ""
	}
	v := r.s[:n]
	r.s = r.s[n:]
	return v
}

func (r *mqttReader) byte(what string) byte {
	if r.err != nil {
		return 0
	}
	if r.s == "" {
		r.err = fmt.Errorf("the body ends before the %s", what)
		return 0
	}
	c := r.s[0]
	r.s = r.s[1:]
	return c
}

// parseMQTT decodes the MQTT 3.1.1 packet at the start of s.
func parseMQTT(s string) (map[string]any, error) {
	typ, flags, body, total, err := mqttHeader(s)
	if err != nil {
		return nil, err
	}
	name := mqttTypeNames[typ]
	out := map[string]any{"type": name, "flags": int(flags), "pid": 0, "topic": "", "payload": "", "qos": 0, "rc": 0,
		"len": total, "rest": s[total:]}
	r := &mqttReader{s: body}
	switch typ {
	case 1: // CONNECT
		out["protocol"] = r.str("protocol name")
		out["level"] = int(r.byte("protocol level"))
		cf := r.byte("connect flags")
		out["keepalive"] = r.u16("keepalive")
		out["client_id"] = r.str("client id")
		if cf&0x04 != 0 { // will
			out["will_topic"] = r.str("will topic")
			out["will_message"] = r.str("will message")
		}
		if cf&0x80 != 0 {
			out["username"] = r.str("user name")
		}
		if cf&0x40 != 0 {
			out["password"] = r.str("password")
		}
	case 2: // CONNACK
		ack := r.byte("acknowledge flags")
		out["session_present"] = ack&1 != 0
		out["rc"] = int(r.byte("return code"))
	case 3: // PUBLISH
		qos := int(flags>>1) & 3
		if qos == 3 {
			return nil, errors.New("publish packet with qos 3")
		}
		out["qos"], out["dup"], out["retain"] = qos, flags&0x08 != 0, flags&0x01 != 0
		out["topic"] = r.str("topic")
		if qos > 0 {
			out["pid"] = r.u16("packet id")
		}
		if r.err == nil {
			out["payload"], r.s = r.s, ""
		}
	case 4, 5, 6, 7, 11: // PUBACK PUBREC PUBREL PUBCOMP UNSUBACK
		out["pid"] = r.u16("packet id")
	case 8, 10: // SUBSCRIBE, UNSUBSCRIBE
		out["pid"] = r.u16("packet id")
		var topics []any
		for r.err == nil && r.s != "" {
			t := map[string]any{"topic": r.str("topic filter"), "qos": 0}
			if typ == 8 {
				t["qos"] = int(r.byte("requested qos"))
			}
			topics = append(topics, t)
		}
		if r.err == nil && len(topics) == 0 {
			return nil, fmt.Errorf("%s packet without a topic filter", name)
		}
		if len(topics) > 0 {
			out["topic"], out["qos"] = topics[0].(map[string]any)["topic"], topics[0].(map[string]any)["qos"]
		}
		out["topics"] = topics
	case 9: // SUBACK
		out["pid"] = r.u16("packet id")
		codes := make([]any, 0, len(r.s))
		for i := 0; i < len(r.s); i++ {
			codes = append(codes, int(r.s[i]))
		}
		r.s = ""
		if r.err == nil && len(codes) == 0 {
			return nil, errors.New("suback packet without a return code")
		}
		if len(codes) > 0 {
			out["rc"] = codes[0]
		}
		out["codes"] = codes
	}
	if r.err != nil {
		return nil, fmt.Errorf("%s packet: %w", name, r.err)
	}
	if r.s != "" {
		return nil, fmt.Errorf("%s packet has %d bytes after its fields", name, len(r.s))
	}
	return out, nil
}

// mqttPacketID is the packet id of the packet at the start of s, or 0
// when it has none or is not a packet. It reads the id without decoding
// the rest.
func mqttPacketID(s string) int {
	typ, flags, body, _, err := mqttHeader(s)
	if err != nil {
		return 0
	}
	r := &mqttReader{s: body}
	switch typ {
	case 3:
		if (flags>>1)&3 == 0 || (flags>>1)&3 == 3 {
			return 0
		}
		r.str("topic")
	case 4, 5, 6, 7, 8, 9, 10, 11:
	default:
		return 0
	}
	id := r.u16("packet id")
	if r.err != nil {
		return 0
	}
	return id
}
