package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the credgate version, the commit and date it was built from, and the Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if _, err := fmt.Fprintf(out, "credgate %s\n", version); err != nil {
				return err
			}
			// A plain `go build` has no stamp; make build, image and
			// release set both (scripts/gobuild.sh).
			if commit != "" || date != "" {
				if _, err := fmt.Fprintf(out, "commit %s %s\n", commit, date); err != nil {
					return err
				}
			}
			// A custom build (examples/custom-build) is another main
			// module: name it and the credgate module it was built with.
			if m, cg := customBuild(); m != "" {
				if _, err := fmt.Fprintf(out, "custom build %s with %s\n", m, cg); err != nil {
					return err
				}
			}
			_, err := fmt.Fprintf(out, "go %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}

// modulePath is this module's path.
const modulePath = "github.com/credgate/credgate"

// customBuild returns, when the binary's main module is not credgate's,
// that module's path and the credgate module version it was built with
// ("github.com/credgate/credgate v0.3.0", or "=> DIR" for a replace).
func customBuild() (main, credgate string) {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Path == "" || bi.Main.Path == modulePath {
		return "", ""
	}
	credgate = modulePath + " (unknown version)"
	for _, d := range bi.Deps {
		if d.Path != modulePath {
			continue
		}
		credgate = modulePath + " " + d.Version
		if d.Replace != nil {
			credgate += " => " + d.Replace.Path
			if v := d.Replace.Version; v != "" && v != "(devel)" {
				credgate += " " + d.Replace.Version
			}
		}
	}
	return bi.Main.Path, credgate
}
