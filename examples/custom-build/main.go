// Command credgate-custom is credgate with one plugin more: the standard
// providers and injectors (the same two blank imports as cmd/credgate),
// the "hello" injector defined in this module, and the credgate command
// line from package cli. No fork: a plugin from any Go module is added by
// one blank import, then
//
//	go build -o credgate .
//	./credgate plugins               # lists hello
//	./credgate validate -c policy.yaml
package main

import (
	"github.com/credgate/credgate/cli"

	_ "github.com/credgate/credgate/injectors/all"
	_ "github.com/credgate/credgate/providers/all"

	_ "example.com/credgate-custom/hello" // the plugin this build adds
)

func main() { cli.Main() }
