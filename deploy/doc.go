// Package deploy holds koipond's deployment: the container image
// (Dockerfile), the Kubernetes manifests (kubernetes/: a kustomize base,
// the pond component and the dev and production overlays), the scaling
// guide (README.md) and the multi-process fault test (faulttest/, run by
// `make test-distributed`).
//
// The package has no code; its tests validate the manifests in `make
// test`: each overlay is built in-process with the kustomize API, every
// document decodes strictly into the official k8s.io/api types (an
// unknown field fails), the invariants the README promises hold (school
// sizing, PodDisruptionBudgets, the schools' egress policy matching their
// allow-target list, one image for every role, no registry host), the NATS
// configuration parses with nats-server's own parser, and every koipond
// container's args are accepted by the koipond binary's own flag parser.
package deploy
