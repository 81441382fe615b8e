// Command credgate-custom is credgate with three plugins more: the
// standard providers and injectors (the same two blank imports as
// cmd/credgate), the "hello" injector, the "hello-token" provider and the
// "hello-attest" identity verifier defined in this module, and the
// credgate command line from package cli. No fork: a plugin from any Go module is added by
// one blank import, then
//
//	go build -o credgate .
//	./credgate plugins               # lists hello, hello-token, hello-attest
//	./credgate validate -c policy.yaml
package main

import (
	"github.com/credgate/credgate/cli"

	_ "github.com/credgate/credgate/injectors/all"
	_ "github.com/credgate/credgate/providers/all"

	_ "example.com/credgate-custom/hello"       // an injector this build adds
	_ "example.com/credgate-custom/helloattest" // an identity verifier
	_ "example.com/credgate-custom/hellotoken"  // a provider
)

func main() { cli.Main() }
