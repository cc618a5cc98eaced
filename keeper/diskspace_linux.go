package keeper

import (
	"os"

	"golang.org/x/sys/unix"
)

// diskSpace returns the bytes free to the keeper on the filesystem
// holding f, and its size.
func diskSpace(f *os.File) (free, size int64, err error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * st.Bsize, int64(st.Blocks) * st.Bsize, nil
}
