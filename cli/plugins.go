package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/internal/module"
	"github.com/credgate/credgate/providers"
)

func newPluginsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "plugins",
		Short: "List the compiled-in providers, injectors and identity verifiers, with their settings",
		Long: `List what this binary can load: the providers (provider: NAME in a
credential), the injectors (as: NAME in a rule's inject block), the identity
verifier plugins (identity.verifiers.NAME in the gateway config) and the
built-in factor kinds (require: NAME in a workload), each with one line
saying what it does and the settings it accepts, with their types.

The set is chosen when the binary is built: cmd/credgate compiles in the
standard plugins; a custom build (examples/custom-build, docs/plugins.md)
adds its own by one blank import.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printPlugins(cmd.OutOrStdout())
		},
	}
}

// plugin is one registered module as `credgate plugins` prints it.
type plugin struct {
	name, doc string
	settings  []module.Setting
}

// builtinKinds describes the factor kinds the identity package
// implements itself; they are configured under their own keys.
var builtinKinds = map[string]string{
	identity.KindSource:     "the client's network address, always present (a workload's cidrs)",
	identity.KindMTLS:       "a client certificate verified on the TLS listener (identity.mtls)",
	identity.KindJWT:        "a signed token in Proxy-Authorization (identity.jwt)",
	identity.KindKubernetes: "a Kubernetes token in Proxy-Authorization, checked by TokenReview (identity.kubernetes)",
}

// printPlugins writes the listing. It reads the default registries, which
// the main package's blank imports filled.
func printPlugins(w io.Writer) error {
	var provs, injs, vers []plugin
	for _, n := range providers.Names() {
		m, _ := providers.Lookup(n)
		provs = append(provs, plugin{n, m.Doc, module.Settings(m.New(), m.SettingDocs)})
	}
	for _, n := range injectors.Names() {
		m, _ := injectors.Lookup(n)
		injs = append(injs, plugin{n, m.Doc, module.Settings(m.New(), m.SettingDocs)})
	}
	for _, n := range identity.DefaultRegistry.Plugins() {
		m, _ := identity.Lookup(n)
		vers = append(vers, plugin{n, m.Doc, module.Settings(m.New(), m.SettingDocs)})
	}
	var kinds []plugin
	for _, n := range identity.Names() {
		if doc, ok := builtinKinds[n]; ok {
			kinds = append(kinds, plugin{name: n, doc: doc})
		}
	}

	var b strings.Builder
	section := func(title string, ps []plugin) {
		fmt.Fprintf(&b, "%s\n", title)
		if len(ps) == 0 {
			b.WriteString("  (none compiled in)\n")
		}
		width := 0
		for _, p := range ps {
			width = max(width, len(p.name))
		}
		for _, p := range ps {
			b.WriteString(strings.TrimRight(fmt.Sprintf("  %-*s  %s", width, p.name, p.doc), " ") + "\n")
			keys := make([]string, len(p.settings))
			kw := 0
			for i, s := range p.settings {
				keys[i] = s.Name + " (" + s.Type + ")"
				kw = max(kw, len(keys[i]))
			}
			for i, s := range p.settings {
				b.WriteString(strings.TrimRight(fmt.Sprintf("      %-*s  %s", kw, keys[i], s.Doc), " ") + "\n")
			}
		}
		b.WriteString("\n")
	}
	section("providers (a credential's provider: NAME)", provs)
	section("injectors (a rule's inject: {as: NAME})", injs)
	section("identity verifiers (identity.verifiers.NAME in the gateway config; require: NAME)", vers)
	section("built-in factor kinds (require: NAME)", kinds)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	_, err := io.WriteString(w, strings.TrimSpace(`
Settings are the keys beside provider: (or as:); unknown keys are errors.
Writing a plugin and building a binary with it: docs/plugins.md.`)+"\n")
	return err
}
