// Package deptest holds the test that keeps the request-path stages
// independent of each other (DESIGN.md: data flows one way, each stage is a
// package, the gateway wires them). It has no code of its own: the rules
// live in deps_test.go as a BadDeps map, in the style of Tailscale's
// tstest/deptest, so a forbidden import fails `go test ./...` with the
// reason and the import chain that brought it in.
package deptest
