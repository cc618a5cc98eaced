package warehouse

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
)

// A damaged run file fails the merge with an error naming it, at any merge
// level, and every run file (the merged ones too) is removed after.
func TestMergeDamagedRunCleansUp(t *testing.T) {
	for _, damaged := range []int{0, 3, 6} {
		t.Run(fmt.Sprint("run ", damaged), func(t *testing.T) {
			dir := t.TempDir()
			s := newCallSorter(1<<16, dir, 2)
			for i := range 30000 {
				if err := s.add(fmt.Sprintf("user-%03d", i%300), int64(i), uint16(i%5), 0); err != nil {
					t.Fatal(err)
				}
			}
			if len(s.runs) <= damaged {
				t.Fatalf("%d runs: want more than %d", len(s.runs), damaged)
			}
			bad := s.runs[damaged]
			// A record cut short: a user of 4 bytes, none of them there.
			f, err := os.OpenFile(bad, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write([]byte{5}); err != nil {
				t.Fatal(err)
			}
			f.Close()
			err = s.each(context.Background(), func([]byte, bool, int64, uint16) error { return nil })
			if err == nil || !strings.Contains(err.Error(), "merging sorted calls") {
				t.Errorf("each over a damaged run: %v, want a merge error", err)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("%d run files left after the failed merge", len(left))
			}
		})
	}
}
