package keeper_test

import (
	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/api"
)

// The keeper's own tests drive it over HTTP; the API is keeper/api's,
// which imports keeper, so only this external test package may hand it
// to them.
func init() { keeper.OpenWithAPI = api.Open }
