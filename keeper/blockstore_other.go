//go:build !unix

package keeper

// mapChunk is memory from the Go heap where there is no mmap.
func mapChunk(n int) ([]byte, error) { return make([]byte, n), nil }

func unmapChunk([]byte) {}
