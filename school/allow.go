package school

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// DefaultAllowTargets is where a school sends load unless told otherwise:
// this machine only.
var DefaultAllowTargets = []string{"127.0.0.0/8", "::1", "localhost"}

// Allow decides which hosts a school may send load to. Patterns are a CIDR
// ("10.0.0.0/8"), an IP, a host name ("pond.staging"), a wildcard
// ("*.staging.example.com"), each optionally with ":port" (except CIDRs).
type Allow struct {
	patterns []allowPattern
	src      []string
}

type allowPattern struct {
	prefix   netip.Prefix // for CIDR and IP patterns
	isPrefix bool
	host     string // lower-case name, or "*.suffix"
	port     string // "" for any port
}

// ParseAllow parses allow-target patterns.
func ParseAllow(patterns []string) (*Allow, error) {
	a := &Allow{src: patterns}
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if strings.Contains(p, "/") {
			pre, err := netip.ParsePrefix(p)
			if err != nil {
				return nil, fmt.Errorf("allow-target %q: %w", p, err)
			}
			a.patterns = append(a.patterns, allowPattern{prefix: pre.Masked(), isPrefix: true})
			continue
		}
		host, port := p, ""
		if h, pt, err := net.SplitHostPort(p); err == nil {
			host, port = h, pt
		}
		if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
			a.patterns = append(a.patterns, allowPattern{prefix: netip.PrefixFrom(ip, ip.BitLen()), isPrefix: true, port: port})
			continue
		}
		if host == "" || strings.ContainsAny(host, " /?#@") {
			return nil, fmt.Errorf("allow-target %q: not a host, host:port, IP or CIDR", p)
		}
		a.patterns = append(a.patterns, allowPattern{host: strings.ToLower(host), port: port})
	}
	if len(a.patterns) == 0 {
		return nil, fmt.Errorf("allow-target: no patterns")
	}
	return a, nil
}

// String lists the patterns.
func (a *Allow) String() string { return strings.Join(a.src, ", ") }

// Host reports whether host:port may receive load.
func (a *Allow) Host(host, port string) bool {
	host = strings.ToLower(strings.Trim(host, "[]"))
	ip, ipErr := netip.ParseAddr(host)
	for _, p := range a.patterns {
		if p.port != "" && p.port != port {
			continue
		}
		switch {
		case p.isPrefix:
			if ipErr == nil && p.prefix.Contains(ip.Unmap()) {
				return true
			}
		case strings.HasPrefix(p.host, "*."):
			if strings.HasSuffix(host, p.host[1:]) {
				return true
			}
		case p.host == host:
			return true
		}
	}
	return false
}

// URL checks a target URL; the error says why it is refused.
func (a *Allow) URL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("target %q: %w", raw, err)
	}
	port := u.Port()
	if port == "" {
		switch u.Scheme {
		case "http", "ws":
			port = "80"
		case "https", "wss":
			port = "443"
		}
	}
	if !a.Host(u.Hostname(), port) {
		return fmt.Errorf("target %s is not in --allow-target (%s)", u.Host, a)
	}
	return nil
}

// DialContext wraps a dial function so that no connection is ever opened
// to a host outside the list, whatever URL a behavior or a boot reply
// produced.
func (a *Allow) DialContext(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if !a.Host(host, port) {
			return nil, fmt.Errorf("%w: %s is not in --allow-target (%s)", ErrNotAllowed, addr, a)
		}
		return dial(ctx, network, addr)
	}
}
