package koi_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// sessionServer speaks a session protocol over plain text frames, the kind
// koipond could not drive before on_connect: a client must "LOGIN <user>"
// (answered "OK LOGIN <user>") before anything else; then "JOIN <room>"
// ("OK JOIN <room>"), "CHAT <room> <text>" (fanned out to every session in
// the room as "MSG|<room>|<unix ms>|<text>") and "PING <n>" ("PONG <n>").
// A frame before LOGIN is answered "ERR not logged in" and counted: a koi
// that sends before its on_connect succeeded shows up there.
type sessionServer struct {
	srv *httptest.Server

	mu         sync.Mutex
	sessions   map[*websocket.Conn]*session
	dials      []time.Time
	logins     map[string]int // user → successful logins
	early      int            // frames received before LOGIN
	chats      int
	pings      int
	silent     bool                                // never answer LOGIN
	closeCodes []int                               // close codes clients sent
	closeTexts []string                            // and their reasons
	binary     [][]byte                            // binary frames sent to every new session after OPEN
	onText     func(c *websocket.Conn, msg string) // extra handling, under mu
	afterLogin []string                            // frames sent right behind "OK LOGIN"
}

type session struct {
	user  string
	rooms map[string]bool
}

func newSessionServer(t testing.TB) *sessionServer {
	t.Helper()
	s := &sessionServer{sessions: map[*websocket.Conn]*session{}, logins: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() {
		s.restart()
		s.srv.Close()
	})
	return s
}

func (s *sessionServer) url() string {
	return "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/session"
}

func (s *sessionServer) serve(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	conn.SetCloseHandler(func(code int, text string) error {
		s.mu.Lock()
		s.closeCodes = append(s.closeCodes, code)
		s.closeTexts = append(s.closeTexts, text)
		s.mu.Unlock()
		return nil
	})
	s.mu.Lock()
	s.sessions[conn] = &session{rooms: map[string]bool{}}
	s.dials = append(s.dials, time.Now())
	conn.WriteMessage(websocket.TextMessage, []byte("OPEN "+strconv.Itoa(len(s.dials))))
	for _, b := range s.binary {
		conn.WriteMessage(websocket.BinaryMessage, b)
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.sessions, conn)
		s.mu.Unlock()
		conn.Close()
	}()
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		s.handle(conn, string(data))
	}
}

func (s *sessionServer) handle(c *websocket.Conn, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[c]
	if sess == nil {
		return
	}
	reply := func(m string) { c.WriteMessage(websocket.TextMessage, []byte(m)) }
	verb, rest, _ := strings.Cut(msg, " ")
	if s.onText != nil {
		s.onText(c, msg)
	}
	if verb == "LOGIN" {
		if !s.silent {
			sess.user = rest
			s.logins[rest]++
			reply("OK LOGIN " + rest)
			for _, m := range s.afterLogin {
				reply(m)
			}
		}
		return
	}
	if sess.user == "" {
		s.early++
		reply("ERR not logged in")
		return
	}
	switch verb {
	case "JOIN":
		sess.rooms[rest] = true
		reply("OK JOIN " + rest)
	case "CHAT":
		room, text, _ := strings.Cut(rest, " ")
		s.chats++
		out := []byte("MSG|" + room + "|" + strconv.FormatInt(time.Now().UnixMilli(), 10) + "|" + text)
		for oc, o := range s.sessions {
			if o.rooms[room] {
				oc.WriteMessage(websocket.TextMessage, out)
			}
		}
	case "PING":
		s.pings++
		reply("PONG " + rest)
	}
}

// broadcast sends a text frame to every session.
func (s *sessionServer) broadcast(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.sessions {
		c.WriteMessage(websocket.TextMessage, []byte(msg))
	}
}

// restart drops every session at once, as a server restart does.
func (s *sessionServer) restart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.sessions {
		c.Close()
	}
}

func (s *sessionServer) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// loggedIn counts users with at least n logins.
func (s *sessionServer) loggedIn(n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := 0
	for _, v := range s.logins {
		if v >= n {
			c++
		}
	}
	return c
}

func (s *sessionServer) get(f func() int) int { return locked(s, f) }

// locked reads the server's state under its lock.
func locked[T any](s *sessionServer, f func() T) T {
	s.mu.Lock()
	defer s.mu.Unlock()
	return f()
}
