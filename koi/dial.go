package koi

import (
	"context"
	"net"
	"net/http"

	"github.com/gorilla/websocket"
)

// dial opens the websocket at url. Stop (ctx done) aborts it at any
// point: the dialer honours ctx only while the TCP connection opens, so a
// server that accepts and then never answers the handshake would hold the
// koi (and its stop) for the whole handshake timeout; here ctx closes
// that connection.
func (k *Koi) dial(ctx context.Context, url string, h http.Header) (*websocket.Conn, *http.Response, error) {
	d := *k.rt.dialer
	var unwatch func() bool
	netDial := d.NetDialContext
	if nd := d.NetDial; netDial == nil && nd != nil {
		netDial = func(_ context.Context, network, addr string) (net.Conn, error) { return nd(network, addr) }
	}
	if netDial == nil {
		netDial = (&net.Dialer{}).DialContext
	}
	d.NetDialContext = func(dctx context.Context, network, addr string) (net.Conn, error) {
		c, err := netDial(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		unwatch = context.AfterFunc(ctx, func() { c.Close() })
		return c, nil
	}
	if tlsDial := d.NetDialTLSContext; tlsDial != nil {
		d.NetDialTLSContext = func(dctx context.Context, network, addr string) (net.Conn, error) {
			c, err := tlsDial(dctx, network, addr)
			if err != nil {
				return nil, err
			}
			unwatch = context.AfterFunc(ctx, func() { c.Close() })
			return c, nil
		}
	}
	conn, resp, err := d.DialContext(ctx, url, h)
	if unwatch != nil {
		unwatch()
	}
	return conn, resp, err
}
