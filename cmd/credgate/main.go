// Command credgate is the credential-injecting egress gateway with the
// standard set of plugins. The command line itself is package cli; this
// file is only the list of compiled-in plugins and the call to cli.Main,
// so that a build with other plugins is a main package of its own, not a
// fork (see examples/custom-build and docs/plugins.md).
package main

import (
	"github.com/credgate/credgate/cli"

	// The compiled-in plugins: every provider and injector registered by
	// name. Identity verifier plugins would be listed here too; the
	// built-in factor kinds (source, mtls, jwt, kubernetes) need no import.
	_ "github.com/credgate/credgate/injectors/all"
	_ "github.com/credgate/credgate/providers/all"
)

func main() { cli.Main() }
