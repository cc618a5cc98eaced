package koi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// chatServer is a small Slack-style server over real sockets for koi tests:
// it records every API call and can push frames to connected websockets.
type chatServer struct {
	srv *httptest.Server

	mu        sync.Mutex
	calls     []call
	conns     map[*websocket.Conn]string // conn → token
	connects  int
	rateLimit map[string]int // method → remaining 429 replies
	onFrame   func(c *websocket.Conn, frame []byte)
	pings     int // websocket pings received from koi
}

type call struct {
	Method string
	Token  string
	Args   map[string]string
	At     time.Time
}

func newChatServer(t testing.TB) *chatServer {
	t.Helper()
	s := &chatServer{conns: map[*websocket.Conn]string{}, rateLimit: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/{method}", s.api)
	mux.HandleFunc("GET /ws", s.ws)
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "x_koi": r.Header.Get("X-Koi"),
			"content_type": r.Header.Get("Content-Type"), "body": string(body)})
	})
	mux.HandleFunc("/teapot", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.close)
	return s
}

func (s *chatServer) close() {
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.srv.Close()
}

func (s *chatServer) apiBase() string { return s.srv.URL + "/api" }
func (s *chatServer) wsURL() string   { return "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/ws" }

func (s *chatServer) api(w http.ResponseWriter, r *http.Request) {
	method := r.PathValue("method")
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	c := call{Method: method, Token: strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), Args: map[string]string{}, At: time.Now()}
	for k := range r.PostForm {
		c.Args[k] = r.PostForm.Get(k)
	}
	s.mu.Lock()
	s.calls = append(s.calls, c)
	limited := s.rateLimit[method] > 0
	if limited {
		s.rateLimit[method]--
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if limited {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"ok":false,"error":"ratelimited"}`)
		return
	}
	var reply any
	switch method {
	case "rtm.connect":
		reply = map[string]any{"ok": true, "url": s.wsURL() + "?token=" + c.Token}
	case "conversations.list":
		reply = map[string]any{"ok": true, "channels": []any{
			map[string]any{"id": "C1", "name": "general", "is_member": true, "is_general": true, "num_members": 3},
			map[string]any{"id": "C2", "name": "random", "is_member": false},
		}}
	case "conversations.history":
		reply = map[string]any{"ok": true, "messages": []any{
			map[string]any{"type": "message", "ts": "1700000002.000200", "user": "U2", "text": "newest"},
			map[string]any{"type": "message", "ts": "1700000001.000100", "user": "U1", "text": "older"},
		}, "has_more": false}
	case "fail.method":
		reply = map[string]any{"ok": false, "error": "invalid_arguments"}
	default:
		reply = map[string]any{"ok": true}
	}
	json.NewEncoder(w).Encode(reply)
}

var upgrader = websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024}

func (s *chatServer) ws(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.conns[conn] = r.URL.Query().Get("token")
	s.connects++
	conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"hello"}`))
	s.mu.Unlock()
	conn.SetPingHandler(func(data string) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.pings++
		return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		conn.Close()
	}()
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		var m map[string]any
		if json.Unmarshal(data, &m) == nil && m["type"] == "ping" {
			b, _ := json.Marshal(map[string]any{"type": "pong", "reply_to": m["id"]})
			s.mu.Lock()
			conn.WriteMessage(websocket.TextMessage, b)
			s.mu.Unlock()
		}
		s.mu.Lock()
		f := s.onFrame
		s.mu.Unlock()
		if f != nil {
			f(conn, data)
		}
	}
}

// broadcast sends a frame to every connected websocket.
func (s *chatServer) broadcast(frame string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.WriteMessage(websocket.TextMessage, []byte(frame))
	}
}

// dropAll closes every websocket from the server side.
func (s *chatServer) dropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

func (s *chatServer) callsOf(method string) []call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []call
	for _, c := range s.calls {
		if c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

func (s *chatServer) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
