package keeper

import (
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/wire"
)

// reservedWSHeaders are set by the websocket handshake itself: a run that
// gave one would fail every dial ("duplicate header not allowed").
var reservedWSHeaders = map[string]bool{"Upgrade": true, "Connection": true, "Sec-Websocket-Key": true,
	"Sec-Websocket-Version": true, "Sec-Websocket-Extensions": true, "Sec-Websocket-Protocol": true, "Host": true}

// checkTarget checks where a run's koi go: api_base (optional here; see
// checkAPIBase), the websocket URL, subprotocols and handshake headers.
func checkTarget(t *state.Target) *Error {
	if t.APIBase != "" {
		if err := checkURL("target.api_base", t.APIBase, "http", "https"); err != nil {
			return err
		}
	}
	if t.WebsocketURL != "" {
		if err := checkURL("target.websocket_url", t.WebsocketURL, "ws", "wss"); err != nil {
			return err
		}
	}
	if len(t.WebsocketSubprotocols) > wire.MaxSubprotocols {
		return invalid("target.websocket_subprotocols", "%d subprotocols, more than %d", len(t.WebsocketSubprotocols), wire.MaxSubprotocols)
	}
	for _, p := range t.WebsocketSubprotocols {
		if !isToken(p) || len(p) > 256 {
			return invalid("target.websocket_subprotocols", "%q is not a subprotocol name (1 to 256 letters, digits and !#$%%&'*+-.^_`|~)", clipName(p))
		}
	}
	if len(t.WebsocketHeaders) > wire.MaxWebsocketHeaders {
		return invalid("target.websocket_headers", "%d headers, more than %d", len(t.WebsocketHeaders), wire.MaxWebsocketHeaders)
	}
	for name, value := range t.WebsocketHeaders {
		field := "target.websocket_headers." + clipName(name)
		switch {
		case !isToken(name) || len(name) > 256:
			return invalid("target.websocket_headers", "%q is not a header name", clipName(name))
		case reservedWSHeaders[http.CanonicalHeaderKey(name)]:
			return invalid(field, "%s is set by the websocket handshake itself", http.CanonicalHeaderKey(name))
		case len(value) > wire.MaxTemplate:
			return invalid(field, "%d bytes, more than %d", len(value), wire.MaxTemplate)
		case strings.ContainsAny(value, "\r\n\x00"):
			return invalid(field, "a header value holds no line break or NUL")
		}
		if _, err := behaviors.ParseSpecTemplate(field, value); err != nil {
			return invalid(field, "%v", err)
		}
	}
	return nil
}

// checkAPIBase refuses a run without target.api_base whose behavior set
// sends api requests (they would all fail). A set that does not parse any
// more counts as one that does.
func checkAPIBase(t *state.Target, set *state.BehaviorSet) *Error {
	if t.APIBase != "" || !setFactsOf(set).hasAPI {
		return nil
	}
	return invalid("target.api_base", "behavior set %s (%s v%d) sends api requests: give target.api_base, the http(s) URL they go to", hashPrefix(set.Hash), set.Name, set.Version)
}

// checkLaunchAPIBase refuses launching a formation that sends api
// requests over a run without target.api_base (every one would fail).
func checkLaunchAPIBase(run *state.Run, fm *state.Formation) *Error {
	if run.Target.APIBase != "" {
		return nil
	}
	if ff := formFactsOf(fm); ff.lite != nil && !ff.hasAPI {
		return nil
	}
	return invalid("formation", "formation %s sends api requests, and run %s has no target.api_base for them", fm.Name, run.ID)
}

func hashPrefix(h string) string { return h[:min(len(h), 12)] }

// isToken reports whether s is an HTTP token (RFC 9110 5.6.2): what header
// names and websocket subprotocols are made of.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// clipName keeps error messages short: at most 64 bytes of a name, cut
// at a rune start.
func clipName(s string) string {
	if len(s) <= 64 {
		return s
	}
	cut := 64
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
