//go:build unix

package keeper

import "golang.org/x/sys/unix"

// mapChunk maps n bytes of private anonymous memory: outside the Go heap,
// and only the pages written take memory.
func mapChunk(n int) ([]byte, error) {
	return unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
}

func unmapChunk(c []byte) { _ = unix.Munmap(c) }
