// Package api is the keeper's HTTP edge (echo): the route table under
// /api/v1 and every handler, the conversions between the keeper's values
// and the keeper/contract types its JSON has (convert.go), the names
// clients use for those types (contract.go: the CLI imports this package,
// never the keeper's internals or keeper/state), server-sent events,
// /metrics, /healthz,
// token authentication by role, and the edge rules every request passes
// (edge.go: Host and Origin checks, JSON writes, bounded bodies).
//
// Open binds the HTTP port, opens the keeper core and gives it Handler to
// serve: the server's goroutine is the keeper's (keeper.Keeper.Serve),
// and Keeper.Close shuts it down first. This package starts no goroutine
// of its own; a request's handler lives as long as its request (event
// streams and long polls also end when the keeper closes).
package api
