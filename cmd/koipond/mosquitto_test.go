package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/koipond/koipond/wire/wiretest"
)

// mosquitto runs Debian's Eclipse Mosquitto broker (a real MQTT 3.1.1/5
// broker) as a child process with one websockets listener on loopback,
// and counts what arrives from the broker's own log: every packet it
// received (log_type all), per client and per topic, and which clients it
// holds connected. The log is the broker's own account, written by the
// code that handled each packet; a subscriber of ours would only count
// what the broker chose to forward (QoS 0 may be dropped under load), and
// $SYS counters are neither per topic nor faster than once a second.
//
// Each packet carries the broker's own timestamp of its log line (unix
// seconds, taken as it handled the packet: windows of whole seconds are
// exact however late the test reads the log) and the time the line
// reached the test.
type mosquitto struct {
	t       testing.TB
	bin     string
	stdbuf  string
	conf    string
	Port    int // the websockets listener's port, stable across restarts
	tcpPort int // a plain MQTT listener, unused: 2.0.11 exits without one

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	up       map[string]bool // client id → connected now
	connects map[string]int  // client id → CONNECTs accepted
	subs     map[string]int  // client id → SUBSCRIBEs received
	subGen   map[string]int  // client id → the broker generation of its last SUBSCRIBE
	gen      int             // 1 for the first broker, +1 at each restart
	sentPub  int             // PUBLISH packets the broker sent to subscribers
	refused  int             // CONNECTs answered with a refusing CONNACK
	lastSec  int64           // the latest broker timestamp read
	head     []string        // the current broker's first log lines, for an error at start
	packets  []brokerPacket  // every PUBLISH and PINGREQ received, in order
	lines    int
	unknown  []string // the first few lines that mention a client but no pattern here
}

// brokerPacket is one packet the broker logged as received.
type brokerPacket struct {
	At     time.Time // when the line reached the test
	Sec    int64     // the broker's own timestamp (unix seconds) of the line
	Gen    int       // which broker (1, then +1 per restart)
	Kind   string    // "PUBLISH" or "PINGREQ"
	Client string
	QoS    int
	Topic  string
}

// findMosquitto returns the broker's path. On CI the test never skips:
// .ci/run installs Debian's mosquitto.
func findMosquitto(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("mosquitto not found: .ci/run must install Debian's mosquitto (apt-get install -y mosquitto)")
	}
	t.Skip("mosquitto not found: install it (apt-get install -y mosquitto) to run the MQTT example test")
	return ""
}

// startMosquitto starts a broker on a free loopback port with a config in
// t.TempDir(); it is stopped (by pid) when the test ends. Anonymous
// clients are welcome unless refuseAnonymous: then every CONNECT without
// credentials is answered CONNACK 5 (not authorized) and closed.
func startMosquitto(t testing.TB, refuseAnonymous bool) *mosquitto {
	t.Helper()
	m := &mosquitto{t: t, bin: findMosquitto(t), up: map[string]bool{}, connects: map[string]int{},
		subs: map[string]int{}, subGen: map[string]int{}}
	var err error
	if m.stdbuf, err = exec.LookPath("stdbuf"); err != nil {
		t.Fatalf("stdbuf (coreutils) not found: it line-buffers the broker's log: %v", err)
	}
	m.Port, m.tcpPort = freePort(t), freePort(t)
	dir := t.TempDir()
	m.conf = filepath.Join(dir, "mosquitto.conf")
	conf := fmt.Sprintf(`# written by the koipond MQTT example test
per_listener_settings false
allow_anonymous %t
persistence false
set_tcp_nodelay true
max_queued_messages 10000
log_dest stdout
log_type all
log_timestamp true
connection_messages true
websockets_log_level 0
# Debian's 2.0.11 binds a websockets listener on every address whatever
# the address given (libwebsockets ignores it); the port is random and
# lives as long as the test. It also exits ("Unable to start any
# listening sockets") when every listener is a websockets one: hence the
# plain listener, which nothing uses.
listener %d 127.0.0.1
protocol websockets
listener %d 127.0.0.1
`, !refuseAnonymous, m.Port, m.tcpPort)
	if os.Geteuid() == 0 {
		conf += "user root\n" // else it switches to user mosquitto, which may not exist
	}
	if err := os.WriteFile(m.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.stop) // first: a start that fails still leaves a process to end
	m.start()
	return m
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// URL is the broker's websockets address.
func (m *mosquitto) URL() string { return "ws://127.0.0.1:" + strconv.Itoa(m.Port) + "/mqtt" }

func (m *mosquitto) start() {
	m.t.Helper()
	// mosquitto writes its stdout log through stdio, block-buffered on a
	// pipe; coreutils' stdbuf makes it line-buffered (and execs the
	// broker: the pid is the broker's).
	cmd := exec.Command(m.stdbuf, "-oL", m.bin, "-c", m.conf)
	out, err := cmd.StdoutPipe()
	if err != nil {
		m.t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("starting mosquitto: %v", err)
	}
	exited := make(chan struct{})
	m.mu.Lock()
	m.cmd, m.exited = cmd, exited
	m.gen++
	m.head = nil
	m.mu.Unlock()
	listening := make(chan struct{})
	go func() {
		defer close(exited)
		m.read(out, listening)
		_ = cmd.Wait()
	}()
	select {
	case <-listening:
	case <-exited:
		m.mu.Lock()
		head := strings.Join(m.head, "\n  ")
		m.mu.Unlock()
		m.t.Fatalf("mosquitto exited at start (config %s):\n  %s", m.conf, head)
	case <-time.After(10 * time.Second):
		m.t.Fatal("mosquitto did not report running within 10 s")
	}
	// The log says it opened the socket; wait until it accepts.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(m.Port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("mosquitto's websockets listener does not accept: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the broker by its pid (SIGTERM, then SIGKILL after 5 s) and
// waits for it; every client connection is then gone.
func (m *mosquitto) stop() {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	m.mu.Lock()
	clear(m.up) // a dead broker holds no client
	m.mu.Unlock()
}

// restart stops the broker and starts a new one on the same port (no
// persistence: every session and subscription is gone).
func (m *mosquitto) restart() {
	m.t.Helper()
	m.stop()
	m.start()
}

var (
	logRunning    = regexp.MustCompile(`^mosquitto version \S+ running`)
	logConnected  = regexp.MustCompile(`^New client connected from \S+ as (\S+) `)
	logGone       = regexp.MustCompile(`^(?:Client (\S+) (?:disconnected|closed its connection|has exceeded timeout)|Socket error on client (\S+), disconnecting)`)
	logPublish    = regexp.MustCompile(`^Received PUBLISH from (\S+) \(d\d, q(\d), r\d, m\d+, '([^']*)'`)
	logReceived   = regexp.MustCompile(`^Received ([A-Z]+) from (\S+)`)
	logRefused    = regexp.MustCompile(`^Sending CONNACK to \S+ \(\d, [1-9]\d*\)`)
	logMentioning = regexp.MustCompile(`(?i)client|from`)
)

// read parses the broker's log until it ends.
func (m *mosquitto) read(r io.Reader, listening chan struct{}) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	announced := false
	for sc.Scan() {
		now := time.Now()
		line := sc.Text()
		var sec int64
		if i := strings.Index(line, ": "); i > 0 {
			if v, err := strconv.ParseInt(line[:i], 10, 64); err == nil {
				sec, line = v, line[i+2:]
			}
		}
		m.mu.Lock()
		m.lines++
		if len(m.head) < 30 {
			m.head = append(m.head, line)
		}
		m.lastSec = max(m.lastSec, sec)
		switch {
		case logPublish.MatchString(line):
			g := logPublish.FindStringSubmatch(line)
			q, _ := strconv.Atoi(g[2])
			m.packets = append(m.packets, brokerPacket{At: now, Sec: sec, Gen: m.gen, Kind: "PUBLISH", Client: g[1], QoS: q, Topic: g[3]})
		case strings.HasPrefix(line, "Sending PUBLISH to "):
			m.sentPub++
		case logRefused.MatchString(line):
			m.refused++
		case logReceived.MatchString(line):
			g := logReceived.FindStringSubmatch(line)
			switch g[1] {
			case "SUBSCRIBE":
				m.subs[g[2]]++
				m.subGen[g[2]] = m.gen
			case "PINGREQ":
				m.packets = append(m.packets, brokerPacket{At: now, Sec: sec, Gen: m.gen, Kind: "PINGREQ", Client: g[2]})
			}
		case logConnected.MatchString(line):
			id := logConnected.FindStringSubmatch(line)[1]
			m.up[id] = true
			m.connects[id]++
		case logGone.MatchString(line):
			g := logGone.FindStringSubmatch(line)
			delete(m.up, g[1]+g[2])
		case !announced && logRunning.MatchString(line):
			announced = true
			close(listening)
		case logMentioning.MatchString(line) && len(m.unknown) < 20:
			m.unknown = append(m.unknown, line)
		}
		m.mu.Unlock()
	}
	if err := sc.Err(); err != nil {
		// A line over the 1 MiB cap (the broker's lines are far shorter):
		// say so, and keep draining so the broker never blocks on a full
		// pipe.
		m.mu.Lock()
		m.unknown = append(m.unknown, "log reader: "+err.Error())
		m.mu.Unlock()
		m.t.Errorf("reading the broker's log: %v", err)
		_, _ = io.Copy(io.Discard, r)
	}
}

// Clients returns how many MQTT clients the broker holds connected.
func (m *mosquitto) Clients() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.up)
}

// Subscribed returns how many of the given clients are connected to the
// current broker and have sent it SUBSCRIBE.
func (m *mosquitto) Subscribed(ids []string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, id := range ids {
		if m.up[id] && m.subGen[id] == m.gen {
			n++
		}
	}
	return n
}

// LoggedUntil returns the latest broker timestamp (unix seconds) read
// from its log: every packet the broker handled before that second has
// been counted.
func (m *mosquitto) LoggedUntil() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastSec
}

// Refused returns how many CONNECTs the broker refused.
func (m *mosquitto) Refused() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.refused
}

// Generation returns which broker runs now: 1, then +1 per restart.
func (m *mosquitto) Generation() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gen
}

// Delivered returns how many PUBLISH packets the broker has sent to
// subscribers.
func (m *mosquitto) Delivered() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sentPub
}

// Packets returns a copy of every PUBLISH and PINGREQ received so far.
func (m *mosquitto) Packets() []brokerPacket {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]brokerPacket(nil), m.packets...)
}

// Sockets counts the TCP connections the broker holds open on its
// websockets port (ESTABLISHED or CLOSE_WAIT on its side), read from
// /proc/net/tcp and tcp6 (the listener is dual-stack): the operating
// system's view, below MQTT and websockets.
func (m *mosquitto) Sockets() (int, error) {
	port := fmt.Sprintf(":%04X", m.Port)
	n := 0
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(name)
		if err != nil {
			return 0, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 4 || !strings.HasSuffix(fs[1], port) {
				continue
			}
			if fs[3] == "01" || fs[3] == "08" { // ESTABLISHED, CLOSE_WAIT
				n++
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// The counting the MQTT example relies on, checked with a hand-written
// client: the broker's log yields exactly the packets sent, per topic and
// QoS, the connected clients, and the sockets it holds.
func TestMosquittoCounts(t *testing.T) {
	m := startMosquitto(t, false)
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial(m.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	packet := func(first byte, body ...[]byte) []byte {
		var b []byte
		for _, p := range body {
			b = append(b, p...)
		}
		return append([]byte{first, byte(len(b))}, b...) // bodies here are < 128 bytes
	}
	exchange := func(p []byte, reply byte) {
		t.Helper()
		if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
			t.Fatal(err)
		}
		if reply == 0 {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, got, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 || got[0] != reply {
			t.Fatalf("sent % x, got % x, want a packet starting %02x", p, got, reply)
		}
	}
	exchange(packet(0x10, str("MQTT"), []byte{4, 2, 0, 60}, str("probe")), 0x20) // CONNECT → CONNACK
	exchange(packet(0x82, []byte{0, 1}, str("rooms/x"), []byte{0}), 0x90)        // SUBSCRIBE → SUBACK
	exchange(packet(0x32, str("chat/x"), []byte{0, 2}, []byte("hello")), 0x40)   // PUBLISH q1 → PUBACK
	exchange(packet(0x30, str("presence/x"), []byte("here")), 0)                 // PUBLISH q0
	exchange(packet(0x30, str("rooms/x"), []byte("to myself")), 0x30)            // fan-out to the subscriber
	exchange([]byte{0xc0, 0}, 0xd0)                                              // PINGREQ → PINGRESP
	wiretest.Until(t, 5*time.Second, "the broker's log of 4 packets", func() bool { return len(m.Packets()) == 4 })
	got := map[string]int{}
	for _, p := range m.Packets() {
		got[fmt.Sprintf("%s %s q%d %s", p.Kind, p.Client, p.QoS, p.Topic)]++
	}
	want := map[string]int{"PUBLISH probe q1 chat/x": 1, "PUBLISH probe q0 presence/x": 1, "PUBLISH probe q0 rooms/x": 1, "PINGREQ probe q0 ": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("broker counted %v, want %v", got, want)
	}
	if n := m.Clients(); n != 1 {
		t.Errorf("%d clients connected, want 1", n)
	}
	if n, err := m.Sockets(); err != nil || n != 1 {
		t.Errorf("%d sockets open (%v), want 1", n, err)
	}
	c.Close()
	wiretest.Until(t, 5*time.Second, "the broker to see the client go", func() bool {
		n, _ := m.Sockets()
		return m.Clients() == 0 && n == 0
	})
	m.mu.Lock()
	t.Logf("%d log lines; unparsed lines naming clients: %q", m.lines, m.unknown)
	m.mu.Unlock()
}
