package school

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"text/template"

	"github.com/koipond/koipond/behaviors"
	"github.com/koipond/koipond/wire"
)

// wsTarget is a run's websocket settings from its spec: the URL and
// subprotocols every koi shares, and header templates rendered per koi.
type wsTarget struct {
	url          string
	subprotocols []string
	headers      map[string]*template.Template // canonical name → value template
}

// headerData is what a header template sees.
type headerData struct {
	Index         int
	Token, UserID string
}

// newWSTarget compiles a spec's websocket settings, refusing header
// templates that do not parse or fail for koi 0 (the keeper checks the
// same; a school does not trust the bus).
func newWSTarget(spec wire.RunSpec) (*wsTarget, error) {
	w := &wsTarget{url: spec.WebsocketURL, subprotocols: slices.Clone(spec.WebsocketSubprotocols)}
	for name, src := range spec.WebsocketHeaders {
		t, err := template.New(name).Option("missingkey=error").Parse(src)
		if err != nil {
			return nil, fmt.Errorf("websocket_headers.%s template: %w", name, err)
		}
		if err := t.Execute(&strings.Builder{}, headerData{}); err != nil {
			return nil, fmt.Errorf("websocket_headers.%s template: %w", name, err)
		}
		if w.headers == nil {
			w.headers = make(map[string]*template.Template, len(spec.WebsocketHeaders))
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
// is left out rather than sent: it would split the handshake request.
func (w *wsTarget) forKoi(id behaviors.Identity) (behaviors.WebsocketSpec, []string) {
	ws := w.shared()
	var dropped []string
	for _, name := range slices.Sorted(maps.Keys(w.headers)) {
		var b strings.Builder
		if err := w.headers[name].Execute(&b, headerData{Index: id.Index, Token: id.Token, UserID: id.UserID}); err != nil ||
			strings.ContainsAny(b.String(), "\r\n\x00") {
			dropped = append(dropped, name)
			continue
		}
		if ws.Header == nil {
			ws.Header = make(http.Header, len(w.headers))
		}
		ws.Header.Set(name, b.String())
	}
	return ws, dropped
}
