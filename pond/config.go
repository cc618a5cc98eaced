package pond

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Defaults of Config; a zero field means its default.
const (
	DefaultAddr              = "127.0.0.1:0"
	DefaultUsers             = 20000
	DefaultChannels          = 500
	DefaultHistoryPerChannel = 50
	DefaultHistoryCap        = 1000
	DefaultSeed              = 1
	DefaultSendQueue         = 256
	DefaultWriteTimeout      = 10 * time.Second
	DefaultPingInterval      = 30 * time.Second
	DefaultMaxBodyBytes      = 1 << 20
	DefaultMaxFrameBytes     = 16 << 10
	DefaultTicketTTL         = 5 * time.Minute
	DefaultShutdownTimeout   = 5 * time.Second
)

// Config configures a pond Server. The zero value is valid: every zero field
// takes the default documented on it.
type Config struct {
	// Addr is the TCP address to listen on (default "127.0.0.1:0", a random
	// loopback port).
	Addr string

	// Users is the number of users in the workspace (default 20,000).
	Users int
	// Channels is the number of channels including #general and
	// #announcements (default 500, at least 2).
	Channels int
	// HistoryPerChannel is the number of messages each channel starts with
	// (default 50; negative means none).
	HistoryPerChannel int
	// HistoryCap bounds the messages kept per channel, a ring that forgets
	// the oldest (default 1,000).
	HistoryCap int
	// Seed drives the deterministic workspace generation (default 1).
	Seed uint64

	// TokenSecret, when set, makes user i's token HMACToken(TokenSecret, i)
	// instead of Token(i).
	TokenSecret string
	// Tokens, when set, lists the tokens: Tokens[i] is user i's. It takes
	// precedence over TokenSecret and must hold Users distinct entries.
	Tokens []string

	// RateLimits overrides the default per-token limits (DefaultRateLimits),
	// keyed by method name or tier name ("tier1".."tier4"); a method key
	// beats its tier's key. A zero Rate disables that limit.
	RateLimits map[string]Rate
	// DisableRateLimits turns every rate limit off.
	DisableRateLimits bool

	// Inject adds latency and errors per method ("*" for every method).
	Inject map[string]Fault

	// SendQueue bounds the events queued per websocket; a connection whose
	// queue is full is a slow consumer and is disconnected (default 256).
	SendQueue int
	// WriteTimeout bounds one websocket write; a connection that cannot
	// take a write in time is a slow consumer too (default 10s).
	WriteTimeout time.Duration
	// PingInterval is how often the server pings idle websockets; a
	// connection silent for two intervals is closed (default 30s, negative
	// disables).
	PingInterval time.Duration
	// MaxBodyBytes bounds an API request body (default 1 MiB).
	MaxBodyBytes int64
	// MaxFrameBytes bounds a client websocket frame (default 16 KiB).
	MaxFrameBytes int64
	// TicketTTL is how long an rtm.connect URL stays valid (default 5m).
	TicketTTL time.Duration
	// ShutdownTimeout bounds Close's graceful shutdown (default 5s).
	ShutdownTimeout time.Duration

	// Pprof serves net/http/pprof under /debug/pprof/ (for profiling
	// benchmarks; off by default).
	Pprof bool

	// Logger receives lifecycle logs (default: discard).
	Logger *slog.Logger
}

// Rate is a token-bucket limit: Limit calls per Per, with a burst of Limit.
// The zero Rate means unlimited.
type Rate struct {
	Limit int
	Per   time.Duration
}

// IsZero reports whether r is the unlimited rate.
func (r Rate) IsZero() bool { return r.Limit == 0 || r.Per == 0 }

// String formats r as ParseRate reads it.
func (r Rate) String() string {
	if r.IsZero() {
		return "off"
	}
	return fmt.Sprintf("%d/%s", r.Limit, r.Per)
}

// Fault is an injected misbehavior of one method.
type Fault struct {
	// Latency is added before the method runs.
	Latency time.Duration
	// Error is the probability (0..1) of replying HTTP 500 internal_error.
	Error float64
}

// Rate-limit tiers, after Slack's web API tiers.
const (
	Tier1   = "tier1"
	Tier2   = "tier2"
	Tier3   = "tier3"
	Tier4   = "tier4"
	Special = "special"
)

// MethodTiers maps each API method to its rate-limit tier. Methods in the
// Special tier have their own default limit in DefaultRateLimits.
var MethodTiers = map[string]string{
	"auth.test":             Special,
	"rtm.connect":           Tier1,
	"users.list":            Tier2,
	"users.info":            Tier4,
	"users.setPresence":     Tier2,
	"conversations.list":    Tier2,
	"users.conversations":   Tier3,
	"conversations.info":    Tier3,
	"conversations.members": Tier4,
	"conversations.history": Tier3,
	"conversations.mark":    Tier3,
	"conversations.join":    Tier3,
	"chat.postMessage":      Special,
	"reactions.add":         Tier3,
	"reactions.remove":      Tier2,
}

// DefaultRateLimits are the per-token limits in force unless overridden:
// Slack's tiers, made generous enough that hundreds of koi behaving like
// real users are never limited.
func DefaultRateLimits() map[string]Rate {
	return map[string]Rate{
		Tier1:              {20, time.Minute},
		Tier2:              {100, time.Minute},
		Tier3:              {300, time.Minute},
		Tier4:              {600, time.Minute},
		"auth.test":        {600, time.Minute},
		"chat.postMessage": {60, time.Minute},
	}
}

// Methods returns the API method names pond serves, sorted.
func Methods() []string {
	out := make([]string, 0, len(MethodTiers))
	for m := range MethodTiers {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Users == 0 {
		c.Users = DefaultUsers
	}
	if c.Channels == 0 {
		c.Channels = DefaultChannels
	}
	if c.HistoryPerChannel == 0 {
		c.HistoryPerChannel = DefaultHistoryPerChannel
	} else if c.HistoryPerChannel < 0 {
		c.HistoryPerChannel = 0
	}
	if c.HistoryCap == 0 {
		c.HistoryCap = DefaultHistoryCap
	}
	if c.Seed == 0 {
		c.Seed = DefaultSeed
	}
	if c.SendQueue == 0 {
		c.SendQueue = DefaultSendQueue
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if c.TicketTTL == 0 {
		c.TicketTTL = DefaultTicketTTL
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	return c
}

// Validate returns every problem with c, each naming its field. Zero fields
// are valid (they take defaults).
func (c Config) Validate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("pond config: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Users < 0 || c.Users > 1_000_000 {
		bad("Users", "%d out of range 1..1,000,000", c.Users)
	}
	if c.Channels < 0 || c.Channels == 1 || c.Channels > 100_000 {
		bad("Channels", "%d out of range 2..100,000 (#general and #announcements always exist)", c.Channels)
	}
	if d := c.withDefaults(); d.Users > 0 && d.Channels > 0 && int64(d.Users)*int64(d.Channels) > 1_000_000_000 {
		// Membership is a bitset per channel: keep it under 125 MB.
		bad("Channels", "%d channels × %d users exceeds 10^9 memberships", d.Channels, d.Users)
	}
	if c.HistoryCap < 0 || c.HistoryCap > 1_000_000 {
		bad("HistoryCap", "%d out of range 1..1,000,000", c.HistoryCap)
	}
	d := c.withDefaults()
	if d.HistoryPerChannel > d.HistoryCap {
		bad("HistoryPerChannel", "%d exceeds HistoryCap %d", d.HistoryPerChannel, d.HistoryCap)
	}
	if len(c.Tokens) > 0 {
		if len(c.Tokens) != d.Users {
			bad("Tokens", "has %d tokens for %d users (line i must be user i's token)", len(c.Tokens), d.Users)
		}
		seen := make(map[string]int, len(c.Tokens))
		for i, t := range c.Tokens {
			if t == "" || strings.ContainsAny(t, " \t\r\n") {
				bad("Tokens", "token of user %d is empty or has white space", i)
				continue
			}
			if j, dup := seen[t]; dup {
				bad("Tokens", "users %d and %d share a token", j, i)
			}
			seen[t] = i
		}
	}
	for k, r := range c.RateLimits {
		if _, ok := MethodTiers[k]; !ok && k != Tier1 && k != Tier2 && k != Tier3 && k != Tier4 {
			bad("RateLimits", "unknown method or tier %q", k)
		}
		if r.Limit < 0 || r.Per < 0 {
			bad("RateLimits", "%s: negative rate %d/%s", k, r.Limit, r.Per)
		}
	}
	for _, err := range checkFaults(c.Inject) {
		bad("Inject", "%v", err)
	}
	if c.SendQueue < 0 {
		bad("SendQueue", "negative (%d)", c.SendQueue)
	}
	if c.WriteTimeout < 0 {
		bad("WriteTimeout", "negative (%s)", c.WriteTimeout)
	}
	if c.MaxBodyBytes < 0 {
		bad("MaxBodyBytes", "negative (%d)", c.MaxBodyBytes)
	}
	if c.MaxFrameBytes < 0 || (c.MaxFrameBytes > 0 && c.MaxFrameBytes < 128) {
		bad("MaxFrameBytes", "%d below 128", c.MaxFrameBytes)
	}
	if c.TicketTTL < 0 {
		bad("TicketTTL", "negative (%s)", c.TicketTTL)
	}
	if c.ShutdownTimeout < 0 {
		bad("ShutdownTimeout", "negative (%s)", c.ShutdownTimeout)
	}
	return errs
}

// ErrBadSpec is wrapped by the parse errors of ParseRate, ParseRateLimit and
// ParseInject.
var ErrBadSpec = errors.New("bad spec")

// ParseRate reads "N/DUR" ("50/1m", "1/s", "300/min"), or "off" / "0" for
// unlimited.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if s == "off" || s == "0" || s == "none" {
		return Rate{}, nil
	}
	n, per, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want N/DURATION such as 50/1m: %w", s, ErrBadSpec)
	}
	limit, err := strconv.Atoi(n)
	if err != nil || limit < 0 {
		return Rate{}, fmt.Errorf("rate %q: count must be a non-negative integer: %w", s, ErrBadSpec)
	}
	var d time.Duration
	switch per {
	case "s", "sec", "second":
		d = time.Second
	case "m", "min", "minute":
		d = time.Minute
	case "h", "hour":
		d = time.Hour
	default:
		d, err = time.ParseDuration(per)
		if err != nil || d <= 0 {
			return Rate{}, fmt.Errorf("rate %q: bad period %q: %w", s, per, ErrBadSpec)
		}
	}
	if limit == 0 {
		return Rate{}, nil
	}
	return Rate{Limit: limit, Per: d}, nil
}

// ParseRateLimit reads "KEY=RATE" where KEY is a method or tier name and RATE
// is as in ParseRate: "conversations.history=5/1m", "tier3=off".
func ParseRateLimit(s string) (string, Rate, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return "", Rate{}, fmt.Errorf("rate limit %q: want METHOD=N/DURATION: %w", s, ErrBadSpec)
	}
	r, err := ParseRate(v)
	if err != nil {
		return "", Rate{}, fmt.Errorf("rate limit %q: %w", s, err)
	}
	return k, r, nil
}

// ParseInject reads "METHOD=latency:200ms,error:0.05" ("*" for every
// method).
func ParseInject(s string) (string, Fault, error) {
	m, spec, ok := strings.Cut(s, "=")
	if !ok || m == "" || spec == "" {
		return "", Fault{}, fmt.Errorf("inject %q: want METHOD=latency:DUR,error:P: %w", s, ErrBadSpec)
	}
	var f Fault
	for _, part := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return "", Fault{}, fmt.Errorf("inject %q: %q is not KEY:VALUE: %w", s, part, ErrBadSpec)
		}
		switch k {
		case "latency":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return "", Fault{}, fmt.Errorf("inject %q: bad latency %q: %w", s, v, ErrBadSpec)
			}
			f.Latency = d
		case "error":
			p, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(p) || p < 0 || p > 1 {
				return "", Fault{}, fmt.Errorf("inject %q: error probability %q not in 0..1: %w", s, v, ErrBadSpec)
			}
			f.Error = p
		default:
			return "", Fault{}, fmt.Errorf("inject %q: unknown key %q (want latency or error): %w", s, k, ErrBadSpec)
		}
	}
	return m, f, nil
}
