package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/koipond/koipond/keeper"
	"github.com/nats-io/nats-server/v2/server"
)

// The cluster's authorization block parses with nats-server's own parser
// and gives the school user exactly keeper.SchoolPermissions, the keeper
// user every permission.
func TestClusterAuthConfParses(t *testing.T) {
	dir := t.TempDir()
	c, err := newNATSCreds(dir)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte("listen: 127.0.0.1:-1\n"+c.authConf()), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("%v\n%s", err, c.authConf())
	}
	users := map[string]*server.NkeyUser{}
	for _, u := range opts.Nkeys {
		users[u.Nkey] = u
	}
	if len(users) != 2 || users[c.keeperPub] == nil || users[c.schoolPub] == nil {
		t.Fatalf("nkey users %v", users)
	}
	if users[c.keeperPub].Permissions != nil {
		t.Errorf("the keeper is restricted: %+v", users[c.keeperPub].Permissions)
	}
	got, want := users[c.schoolPub].Permissions, keeper.SchoolPermissions()
	if got == nil || !slices.Equal(got.Publish.Allow, want.Publish.Allow) || !slices.Equal(got.Subscribe.Allow, want.Subscribe.Allow) {
		t.Errorf("school permissions %+v %+v, want %+v %+v", got.Publish, got.Subscribe, want.Publish, want.Subscribe)
	}
	for _, f := range []string{c.keeperSeed, c.schoolSeed} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, fi.Mode(), err)
		}
	}
}
