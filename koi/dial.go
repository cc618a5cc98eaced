package koi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/gorilla/websocket"
	"github.com/koipond/koipond/metrics"
)

// maxHandshakeReply bounds what a target may send in answer to a
// websocket handshake (status line, headers, and whatever a read brings
// with them) before the handshake returns: the bound of an HTTP reply's
// headers. gorilla reads the reply with http.ReadResponse, which has no
// bound of its own: a header line that never ends grew a koi's heap by
// hundreds of megabytes a second until the handshake timed out.
const maxHandshakeReply = DefaultMaxHeaderBytes

// tlsHandshakeAllowance is added to the bound when gorilla runs TLS over
// the bounded connection (a dialer with a Proxy): the TLS handshake is
// read through it too, and a certificate message may take up to 256 KiB.
const tlsHandshakeAllowance = 320 << 10

// errHandshakeTooLarge fails a handshake whose reply passed its bound.
var errHandshakeTooLarge = fmt.Errorf("websocket handshake reply over %d KiB", maxHandshakeReply>>10)

// dial opens the websocket at url. Stop (ctx done) aborts it at any
// point: the dialer honours ctx only while the TCP connection opens, so a
// server that accepts and then never answers the handshake would hold the
// koi (and its stop) for the whole handshake timeout; here ctx closes
// that connection.
//
// What the handshake reads is bounded (maxHandshakeReply) and held
// reserved in the school's reply budget until the handshake returns; then
// the bound is lifted and frames are read under the read limit and the
// budget as usual. Time is bounded by the dialer's HandshakeTimeout,
// which gorilla sets as a deadline on the connection for the whole
// handshake, however slowly the target answers.
func (k *Koi) dial(ctx context.Context, url string, h http.Header) (*websocket.Conn, *http.Response, error) {
	d := *k.rt.dialer
	var unwatch func() bool
	var hc *handshakeConn
	// bound watches raw (stop closes it) and bounds c, raw itself or the
	// TLS connection over it.
	bound := func(raw, c net.Conn, limit int64) net.Conn {
		unwatch = context.AfterFunc(ctx, func() { raw.Close() })
		hc = &handshakeConn{Conn: c, rt: k.rt, left: limit}
		return hc
	}
	netDial := d.NetDialContext
	if nd := d.NetDial; netDial == nil && nd != nil {
		netDial = func(_ context.Context, network, addr string) (net.Conn, error) { return nd(network, addr) }
	}
	if netDial == nil {
		netDial = (&net.Dialer{}).DialContext
	}
	secure := len(url) >= 4 && strings.EqualFold(url[:4], "wss:")
	limit := int64(maxHandshakeReply)
	if secure && d.NetDialTLSContext == nil && d.Proxy != nil {
		limit += tlsHandshakeAllowance // gorilla's TLS runs over the bounded connection
	}
	d.NetDialContext = func(dctx context.Context, network, addr string) (net.Conn, error) {
		c, err := netDial(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		return bound(c, c, limit), nil
	}
	switch tlsDial := d.NetDialTLSContext; {
	case tlsDial != nil:
		d.NetDialTLSContext = func(dctx context.Context, network, addr string) (net.Conn, error) {
			c, err := tlsDial(dctx, network, addr)
			if err != nil {
				return nil, err
			}
			return bound(c, c, maxHandshakeReply), nil
		}
	case secure && d.Proxy == nil:
		// TLS here rather than in gorilla, so that the bound counts the
		// reply's bytes, not the TLS handshake's. (Stop closes the TCP
		// connection: closing a TLS one first writes an alert, which a
		// target that stopped reading can hold for seconds.)
		cfg := d.TLSClientConfig
		d.NetDialTLSContext = func(dctx context.Context, network, addr string) (net.Conn, error) {
			c, err := netDial(dctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc, err := tlsClient(dctx, c, cfg, addr)
			if err != nil {
				c.Close()
				return nil, err
			}
			return bound(c, tc, maxHandshakeReply), nil
		}
	}
	conn, resp, err := d.DialContext(ctx, url, h)
	if unwatch != nil {
		unwatch()
	}
	if hc != nil {
		hc.done() // the connection's reader, if any, starts after this
	}
	if errors.Is(err, ErrReplyBudget) {
		k.rt.series(ReplyBudgetKey).CountReason(metrics.Error, reasonReplyBudget, err.Error())
	}
	return conn, resp, err
}

// tlsClient runs the TLS handshake on c with a copy of cfg (none: the
// defaults), the server name from addr unless cfg names one: as gorilla
// does for websockets, and the Transport for https.
func tlsClient(ctx context.Context, c net.Conn, cfg *tls.Config, addr string) (*tls.Conn, error) {
	if cfg == nil {
		cfg = &tls.Config{}
	} else {
		cfg = cfg.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tc, nil
}

// handshakeConn is a websocket's connection: until done, its reads fail
// with errHandshakeTooLarge past left bytes, and what they read is held
// in the reply budget; after, reads pass straight through. Only the
// dialing goroutine reads it before done, and it calls done before any
// frame is read.
type handshakeConn struct {
	net.Conn
	rt   *Runtime
	left int64 // bytes the handshake may still read; < 0 once done
	held int64 // reserved in the reply budget
}

func (c *handshakeConn) Read(p []byte) (int, error) {
	if c.left < 0 {
		return c.Conn.Read(p)
	}
	if c.left == 0 {
		return 0, errHandshakeTooLarge
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= int64(n)
	c.rt.replyBytes.Add(uint64(n))
	if n > 0 {
		if rerr := c.rt.reserve(int64(n)); rerr != nil {
			return 0, fmt.Errorf("websocket handshake: %w", rerr)
		}
		c.held += int64(n)
	}
	return n, err
}

// done lifts the bound and gives back what the handshake held.
func (c *handshakeConn) done() {
	c.left = -1
	c.rt.release(c.held)
	c.held = 0
}
