package koi_test

import (
	"testing"

	"github.com/koipond/koipond/koi"
)

// logWorkspace logs what the run's shared workspace holds.
func logWorkspace(b *testing.B, rt *koi.Runtime) {
	b.Logf("workspace: %+v", rt.Workspace().Stats())
}
