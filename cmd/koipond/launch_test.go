package main

import (
	"strings"
	"testing"
)

// koipond launch checks the formation's declared parameters before it
// uploads anything: a missing required one or an undeclared one is a
// usage error (exit 2) that names it and lists what the file declares, as
// --help would.
func TestLaunchParamsRefusedByTheCLI(t *testing.T) {
	const seed = "../../examples/seed/announcement-reaction.formation.json"
	// nothing listens here: the check must come before any call
	keeperFlag := "--keeper=http://127.0.0.1:1"
	tests := []struct {
		name string
		args []string
		want []string
	}{
		// the seed formation's channel_id is required
		{"missing", []string{"launch", keeperFlag, "--run", "run-1", seed},
			[]string{"needs --param channel_id=VALUE", "Parameters of " + seed, "--param channel_id=VALUE", "(required)", "announcement channel"}},
		// a typo is named, not sent
		{"unknown", []string{"launch", keeperFlag, "--run", "run-1", "--param", "channel_id=C1", "--param", "chanel=C1", seed},
			[]string{`declares no parameter "chanel"`, "--param channel_id=VALUE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCmd(t, tt.args...)
			if code != exitUsage {
				t.Errorf("code %d, want %d\n%s%s", code, exitUsage, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("%q not in:\n%s", w, errOut)
				}
			}
		})
	}
}
