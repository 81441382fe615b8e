// Package e2e holds the end-to-end tests: they build the real credgate
// binary, start it with a generated config in front of a local TLS origin,
// and drive real clients through it — curl, Go's net/http and Python's
// urllib — configured only with HTTPS_PROXY and a CA file, the way an
// application is. Everything listens on 127.0.0.1; destination names such as
// api.origin.test reach the origin through the gateway's `resolve` map.
//
// The package has no code outside its tests; run it with
//
//	go test ./e2e/
//
// Set CREDGATE_E2E_BINARY to test a prebuilt binary instead of building one.
package e2e
