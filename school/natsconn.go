package school

import (
	"fmt"
	"time"

	"github.com/koipond/koipond/wire"
	"github.com/nats-io/nats.go"
)

// natsOptions: reconnect forever with jittered backoff, never give up at
// start either, credentials and TLS from the config, and logs on every
// change of connection state.
func (s *School) natsOptions() ([]nats.Option, error) {
	c := s.cfg
	opts := []nats.Option{
		nats.Name("koipond-school " + c.ID),
		// Replies come under the prefix the school role may subscribe to
		// (keeper.SchoolPermissions).
		nats.CustomInboxPrefix(wire.SchoolInboxPrefix),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(500*time.Millisecond, 2*time.Second),
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil && !nc.IsClosed() {
				s.log.Warn("NATS disconnected; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			s.log.Info("NATS reconnected", "server", nc.ConnectedUrl())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			s.logLimited("nats-async", "NATS error", "err", err)
		}),
	}
	if c.NATSUser != "" {
		opts = append(opts, nats.UserInfo(c.NATSUser, c.NATSPassword))
	}
	if c.NATSToken != "" {
		opts = append(opts, nats.Token(c.NATSToken))
	}
	if c.NATSNKeySeedFile != "" {
		o, err := nats.NkeyOptionFromSeed(c.NATSNKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("reading NATS nkey seed %s: %w", c.NATSNKeySeedFile, err)
		}
		opts = append(opts, o)
	}
	if c.NATSCredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.NATSCredsFile))
	}
	if c.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(c.TLSCAFile))
	}
	if c.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(c.TLSCertFile, c.TLSKeyFile))
	}
	return opts, nil
}
