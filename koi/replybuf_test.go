package koi

import "testing"

// Pooled reply buffers come in power-of-two sizes from 1 KiB to 64 KiB;
// anything else is left to the garbage collector, and a buffer comes back
// empty and at least as large as asked.
func TestReplyBufSizes(t *testing.T) {
	for _, tc := range []struct{ n, cap int64 }{{1, 1 << 10}, {1 << 10, 1 << 10}, {1<<10 + 1, 2 << 10}, {6700, 8 << 10}, {64 << 10, 64 << 10}, {64<<10 + 1, 64<<10 + 1}} {
		if c := replyBufCap(tc.n); c != tc.cap {
			t.Errorf("replyBufCap(%d) = %d, want %d", tc.n, c, tc.cap)
		}
		b := getReplyBuf(tc.n)
		if len(b) != 0 || int64(cap(b)) != tc.cap {
			t.Errorf("getReplyBuf(%d): len %d cap %d, want 0 and %d", tc.n, len(b), cap(b), tc.cap)
		}
		putReplyBuf(append(b, 'x'))
		if b2 := getReplyBuf(tc.n); len(b2) != 0 || int64(cap(b2)) != tc.cap {
			t.Errorf("getReplyBuf(%d) after a put: len %d cap %d", tc.n, len(b2), cap(b2))
		}
	}
	for _, c := range []int{0, 512, 3000, 128 << 10} {
		if i := replyBufClass(c); i != -1 {
			t.Errorf("replyBufClass(%d) = %d, want -1 (not pooled)", c, i)
		}
	}
}
