package cli

import (
	"fmt"
	"runtime"

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
			_, err := fmt.Fprintf(out, "go %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
