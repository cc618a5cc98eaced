// Package contract is the keeper's HTTP API as clients see it: the JSON
// of the views it answers and of the requests it takes, as Go types with
// their JSON tags. The CLI and the UI's tests decode into these types;
// keeper/api converts the keeper's stored and live types into them at the
// edge, so a stored field can be renamed or moved without a client
// noticing (the golden shapes test in keeper holds the JSON still).
//
// It is a leaf: it imports only wire and the standard library, so the
// keeper core, keeper/api and cmd/koipond may all import it without an
// import pointing up. It has no goroutines and no behavior beyond small
// helpers on its values.
package contract
