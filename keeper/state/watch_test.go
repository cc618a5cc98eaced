package state

import "github.com/hashicorp/go-memdb"

type watchSet = memdb.WatchSet
