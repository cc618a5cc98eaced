package school

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/wire"
)

// wsTarget is a run's websocket settings from its spec: the URL and
// subprotocols every koi shares, and header templates rendered per koi.
type wsTarget struct {
	url          string
	subprotocols []string
	headers      map[string]*behaviors.SpecTemplate // canonical name → value template
}

// newWSTarget compiles a spec's websocket settings, refusing header
// templates that do not parse, fail for koi 0 or could run away (the
// keeper checks the same; a school does not trust the bus).
func newWSTarget(spec wire.RunSpec) (*wsTarget, error) {
	w := &wsTarget{url: spec.WebsocketURL, subprotocols: slices.Clone(spec.WebsocketSubprotocols)}
	for name, src := range spec.WebsocketHeaders {
		t, err := behaviors.ParseSpecTemplate(name, src)
		if err != nil {
			return nil, fmt.Errorf("websocket_headers.%s template: %w", name, err)
		}
		if w.headers == nil {
			w.headers = make(map[string]*behaviors.SpecTemplate, len(spec.WebsocketHeaders))
		}
		w.headers[http.CanonicalHeaderKey(name)] = t
	}
	return w, nil
}

// shared is what every koi of the run gets before its own headers.
func (w *wsTarget) shared() behaviors.WebsocketSpec {
	return behaviors.WebsocketSpec{URL: w.url, Subprotocols: slices.Clone(w.subprotocols)}
}

// perKoi reports whether koi need settings of their own (headers or
// subprotocols that the runtime's shared URL-only spec does not carry
// when the URL comes from boot).
func (w *wsTarget) perKoi() bool { return len(w.headers) > 0 || len(w.subprotocols) > 0 }

// forKoi renders the koi's websocket settings. A header whose value
// renders with a line break or NUL (a token from the list holding one)
// is left out rather than sent: it would split the handshake request. So
// is one that fails for this koi (e.g. renders too much with its token).
func (w *wsTarget) forKoi(id behaviors.Identity) (behaviors.WebsocketSpec, []string) {
	ws := w.shared()
	var dropped []string
	for _, name := range slices.Sorted(maps.Keys(w.headers)) {
		v, err := w.headers[name].Render(behaviors.SpecData{Index: id.Index, Token: id.Token, UserID: id.UserID})
		if err != nil || strings.ContainsAny(v, "\r\n\x00") {
			dropped = append(dropped, name)
			continue
		}
		if ws.Header == nil {
			ws.Header = make(http.Header, len(w.headers))
		}
		ws.Header.Set(name, v)
	}
	return ws, dropped
}
