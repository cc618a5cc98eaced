//go:build !linux

package keeper

import (
	"errors"
	"os"
)

// diskSpace is not known here: the history file is bounded by
// maxSpaceBlocks alone.
func diskSpace(*os.File) (free, size int64, err error) { return 0, 0, errors.ErrUnsupported }
