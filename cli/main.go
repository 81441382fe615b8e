// Package cli is the credgate command line: serve the proxy (serve), run
// a self-contained demonstration (demo), check and explain policy
// (validate, explain), list the compiled-in plugins (plugins), write an
// interception CA (ca init), disable and enable rules, workloads and
// credentials on running gateways (admin), verify audit logs (audit
// verify), run a command with the proxy, CA and a run token set (run)
// and print the version.
//
// It is a package, not a main package, so that a binary with other
// plugins needs no fork (as Caddy's caddycmd): a main package blank-imports
// the plugins it wants (providers/all, injectors/all, its own) and calls
// Main. cmd/credgate is that main package for the standard set;
// examples/custom-build adds one plugin of its own.
//
// Exit codes: 0 success; 1 error (bad config or policy, bad arguments, a
// failed demo); 3 `explain` decided deny.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	// The IANA time zone database, used when the system has none: policy
	// conditions name zones (now.getHours("Europe/Berlin")), and the
	// container image (FROM scratch) and distroless bases have no
	// /usr/share/zoneinfo. Here rather than in cmd/credgate so that a
	// custom build calling Main carries it too. About 450 KB.
	_ "time/tzdata"

	"github.com/spf13/cobra"
)

// version, commit and date are set at build time by scripts/gobuild.sh
// (make build, make image, make release):
//
//	go build -ldflags "-X github.com/credgate/credgate/cli.version=0.1.0 -X github.com/credgate/credgate/cli.commit=HASH -X github.com/credgate/credgate/cli.date=2026-12-01T10:00:00Z" ./cmd/credgate
//
// date is the commit's date, not the build's, so builds are reproducible.
var (
	version = "dev"
	commit  = ""
	date    = ""
)

// Exit codes.
const (
	exitOK     = 0
	exitError  = 1
	exitDenied = 3
)

// Main runs the command line in os.Args and exits with its code. Only
// the plugins registered before it is called (by the blank imports of the
// main package) are available to the policies it loads.
func Main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// exitCode carries a non-default exit code through cobra. When reported is
// true the command already printed everything the user needs to see.
type exitCode struct {
	code     int
	reported bool
	err      error
}

func (e *exitCode) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitCode) Unwrap() error { return e.err }

// run executes the command line args and returns the process exit code.
// It is main without the process: tests call it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ec *exitCode
	if errors.As(err, &ec) {
		if !ec.reported && ec.err != nil {
			fmt.Fprintln(stderr, "credgate: "+oneLine(ec.err.Error()))
		}
		return ec.code
	}
	fmt.Fprintln(stderr, "credgate: "+oneLine(err.Error()))
	return exitError
}

// oneLine folds a multi-line error into one line for the final message;
// commands that print lists (validate) print them themselves.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "credgate",
		Short: "credential-injecting egress gateway",
		Long: `credgate is an egress gateway that applications reach through HTTPS_PROXY.
For every connection it identifies the calling workload, decides from policy
whether it may reach the destination, and injects a short-lived credential
into the request, so that applications hold no API keys of their own.

Try it with nothing installed:  credgate demo   (or: credgate demo --once)`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(
		newServeCmd(),
		newDemoCmd(),
		newValidateCmd(),
		newExplainCmd(),
		newPluginsCmd(),
		newCACmd(),
		newAdminCmd(),
		newAuditCmd(),
		newPolicyCmd(),
		newRunCmd(),
		newVersionCmd(),
	)
	return root
}
