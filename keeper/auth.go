package keeper

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Role is what a token may do. Each role includes the ones below it.
type Role int

// Roles, weakest first.
const (
	RoleNone Role = iota
	// RoleViewer reads everything.
	RoleViewer
	// RoleOperator also pauses, resumes and stops (globally or a run),
	// and launches or cancels formations.
	RoleOperator
	// RoleAdmin may do everything: upload, create and change runs.
	RoleAdmin
)

var roleNames = map[string]Role{"viewer": RoleViewer, "operator": RoleOperator, "admin": RoleAdmin}

// String returns the role's name.
func (r Role) String() string {
	for n, v := range roleNames {
		if v == r {
			return n
		}
	}
	return "none"
}

// ParseRole parses viewer, operator or admin.
func ParseRole(s string) (Role, error) {
	if r, ok := roleNames[s]; ok {
		return r, nil
	}
	return RoleNone, fmt.Errorf("unknown role %q (viewer, operator or admin)", s)
}

// Token is an API credential.
type Token struct {
	Name   string // who, for the audit log
	Role   Role
	Secret string
}

func (t Token) validate() error {
	switch {
	case t.Name == "" || strings.ContainsAny(t.Name, " \t\n"):
		return fmt.Errorf("name %.64q must be one non-empty word", t.Name)
	case checkName("name", t.Name) != nil:
		// The name is the actor of every switch the token sets, and a
		// switch travels to schools, which ignore one out of bounds.
		return fmt.Errorf("name %.64q: at most %d bytes, no control characters", t.Name, maxName)
	case t.Role < RoleViewer || t.Role > RoleAdmin:
		return fmt.Errorf("%s: no role", t.Name)
	case len(t.Secret) < 16:
		return fmt.Errorf("%s: token shorter than 16 characters", t.Name)
	}
	return nil
}

// ParseTokens reads a tokens file: one NAME ROLE TOKEN per line, blank
// lines and # comments ignored. Every problem is reported with its line.
func ParseTokens(name string, data []byte) ([]Token, error) {
	var out []Token
	var errs []string
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		if len(f) != 3 {
			errs = append(errs, fmt.Sprintf("%s:%d: want NAME ROLE TOKEN, got %d fields", name, line, len(f)))
			continue
		}
		role, err := ParseRole(f[1])
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s:%d: %v", name, line, err))
			continue
		}
		t := Token{Name: f[0], Role: role, Secret: f[2]}
		if err := t.validate(); err != nil {
			errs = append(errs, fmt.Sprintf("%s:%d: %v", name, line, err))
			continue
		}
		if prev, dup := seen[t.Secret]; dup {
			errs = append(errs, fmt.Sprintf("%s:%d: same token as line %d", name, line, prev))
			continue
		}
		seen[t.Secret] = line
		out = append(out, t)
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		errs = append(errs, fmt.Sprintf("%s:%d: a line longer than %d bytes; nothing after it was read", name, line+1, bufio.MaxScanTokenSize))
	} else if err != nil {
		errs = append(errs, fmt.Sprintf("%s:%d: %v", name, line+1, err))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("tokens file: %s", strings.Join(errs, "; "))
	}
	return out, nil
}

// authenticator maps bearer tokens to identities. With no tokens at all it
// is disabled and everyone is the anonymous admin (loopback only: Validate
// refuses a non-loopback listener without tokens, and the HTTP edge answers
// only loopback Host names and the keeper's own origin, see keeper/api's edge.go).
type authenticator struct {
	tokens []Token
}

func newAuthenticator(file string, extra []Token) (*authenticator, error) {
	a := &authenticator{tokens: append([]Token(nil), extra...)}
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading tokens: %w", err)
		}
		ts, err := ParseTokens(file, data)
		if err != nil {
			return nil, err
		}
		if len(ts) == 0 {
			return nil, fmt.Errorf("tokens file %s has no tokens", file)
		}
		a.tokens = append(a.tokens, ts...)
	}
	return a, nil
}

func (a *authenticator) enabled() bool { return len(a.tokens) > 0 }

// identify returns the token's name and role; ok is false for an unknown
// token. Comparisons are constant-time.
func (a *authenticator) identify(secret string) (name string, role Role, ok bool) {
	if !a.enabled() {
		return "anonymous", RoleAdmin, true
	}
	for _, t := range a.tokens {
		if subtle.ConstantTimeCompare([]byte(t.Secret), []byte(secret)) == 1 {
			return t.Name, t.Role, true
		}
	}
	return "", RoleNone, false
}

// Identify returns the name and role of an API token's secret; false for
// an unknown one.
func (k *Keeper) Identify(secret string) (name string, role Role, ok bool) {
	return k.auth.identify(secret)
}

// AuthEnabled reports whether API tokens are configured (without them
// every caller is an admin, and only on loopback).
func (k *Keeper) AuthEnabled() bool { return k.auth.enabled() }
