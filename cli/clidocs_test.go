package cli

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

var (
	// invocationRE is a credgate command line in docs/cli.md, up to the
	// end of its code span or line.
	invocationRE = regexp.MustCompile("credgate ((?:[a-z]+ ?)+[^`\\n]*)")
	flagRE       = regexp.MustCompile(`(?:^|[\s\[|])(--?[a-zA-Z][a-z0-9-]*)`)
)

// TestCLIDocsFlags keeps docs/cli.md and the commands in step, both ways:
// every flag a documented command line gives (`credgate admin
// --token-file FILE disable ...`) is a flag of that command, and every
// flag of every command is in docs/cli.md.
func TestCLIDocsFlags(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "cli.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	root := newRootCmd(io.Discard, io.Discard)
	checked := 0
	for i, line := range strings.Split(doc, "\n") {
		for _, m := range invocationRE.FindAllStringSubmatch(line, -1) {
			args := strings.Fields(strings.NewReplacer("[", " ", "]", " ").Replace(m[1]))
			cmd, _, err := root.Find(args)
			if err != nil || cmd == root {
				continue // prose: "credgate serves ..."
			}
			rest, _, _ := strings.Cut(m[1], " -- ") // run's command
			rest, _, _ = strings.Cut(rest, "#")     // a comment
			for _, f := range flagRE.FindAllStringSubmatch(rest, -1) {
				name, _, _ := strings.Cut(f[1], "=")
				checked++
				if lookupFlag(cmd, name) == nil {
					t.Errorf("docs/cli.md:%d: %q: %s has no flag %s", i+1, strings.TrimSpace(m[0]), cmd.CommandPath(), name)
				}
			}
		}
	}
	if checked < 40 {
		t.Errorf("checked %d flags of documented command lines; the format changed?", checked)
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Hidden || f.Name == "help" {
				return
			}
			if !strings.Contains(doc, "--"+f.Name) && (f.Shorthand == "" || !strings.Contains(doc, "-"+f.Shorthand+" ")) {
				t.Errorf("%s --%s is not in docs/cli.md", c.CommandPath(), f.Name)
			}
		})
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
}

// lookupFlag finds a flag of c, its parents' persistent flags included,
// by "--name" or "-n".
func lookupFlag(c *cobra.Command, name string) *pflag.Flag {
	fs := c.Flags()
	fs.AddFlagSet(c.InheritedFlags())
	if long, ok := strings.CutPrefix(name, "--"); ok {
		return fs.Lookup(long)
	}
	return fs.ShorthandLookup(strings.TrimPrefix(name, "-"))
}
