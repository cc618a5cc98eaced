//go:build !unix

package koi

import "net"

// connQuiet cannot peek here: an idle connection counts as quiet.
func connQuiet(net.Conn) bool { return true }
