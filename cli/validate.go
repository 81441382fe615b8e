package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/policy"
	"github.com/credgate/credgate/providers"
)

func newValidateCmd() *cobra.Command {
	var (
		configPath string
		list       bool
	)
	cmd := &cobra.Command{
		Use:   "validate -c FILE",
		Short: "Check a gateway config or a policy file",
		Long: `Check FILE, which is either a gateway config (its policy is checked too) or a
policy; the kind is told by the top-level keys. Providers and injectors are
built from their settings, so a bad setting is reported like a YAML error.
For a gateway config, every file and environment variable it names (CA,
certificates, keys, tokens, the state file, the audit output's directory)
is read and parsed as serve does at start, without writing a file or
connecting anywhere: run it where serve runs. So are the environment
variables and files the policy's credentials read (a static credential's
env: or file:): serve starts without them, but every request using such a
credential would fail with 502 credential_not_configured.

Exit 0 printing "FILE: ok (...)", or exit 1 printing each problem as
FILE:LINE:COL: message. A valid policy may also get warnings, printed as
"FILE:LINE:COL: warning: ..." before the ok line without changing the exit
code: a rule that can never decide a request because an earlier rule
always does (rules are tried in file order), a placeholder rule without
substitute_in, a secret file of the config (ca.key, admin.token_file, the
Redis password and keys, the audit and run-token keys) or of a policy
credential (a static file:, a Vault token, role_id or secret_id file, a
private key file) that others may read or the group or others may write,
or another user owns (chmod 0400, or the Secret volume's defaultMode
0440); a service-account token file (awssts web_identity_token_file,
google subject_token.file, vault kubernetes/jwt token_file) is warned of
only when the group or others may write it or another user owns it.

--list prints the names of the compiled-in providers, injectors and identity
factor kinds; credgate plugins describes them and their settings.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if list {
				printRegistry(out)
				if configPath == "" {
					return nil
				}
				fmt.Fprintln(out)
			}
			if configPath == "" {
				return fmt.Errorf("validate: -c FILE is required (or --list)")
			}
			l, err := load(cmd.Context(), configPath)
			if err != nil {
				for _, line := range errorLines(err) {
					fmt.Fprintln(out, line)
				}
				return &exitCode{code: exitError, reported: true, err: err}
			}
			defer l.policy.Close()
			var looseCreds policy.ErrorList
			if l.kind == kindConfig {
				// Where serve runs: the credentials' own variables and
				// files must be there too, or their requests fail; and
				// their secret files are judged as the config's are.
				probs, warns := l.policy.CheckSources()
				looseCreds = warns
				if probs != nil {
					for _, line := range errorLines(probs) {
						fmt.Fprintln(out, line)
					}
					printWarnings(out, looseCreds)
					return &exitCode{code: exitError, reported: true, err: probs}
				}
			}
			// Warnings do not fail validation: the policy runs as written,
			// and serve reads a secret file of loose mode (logging it).
			if l.config != nil {
				for _, w := range l.config.SecretModeWarnings() {
					fmt.Fprintf(out, "%s:%d:%d: warning: %s\n", w.File, w.Line, w.Col, w.Msg)
				}
			}
			printWarnings(out, looseCreds)
			printWarnings(out, l.policy.Warnings())
			for _, w := range l.policy.Shadowed() {
				fmt.Fprintln(out, w.Error())
			}
			st := l.policy.Stats()
			summary := fmt.Sprintf("%s, %s, %s, %s",
				plural(st.Rules, "rule"), plural(st.Destinations, "destination"),
				plural(st.Credentials, "credential"), plural(st.Workloads, "workload"))
			if l.kind == kindConfig {
				fmt.Fprintf(out, "%s: ok (gateway config; policy %s: %s)\n", configPath, l.policyPath, summary)
			} else {
				fmt.Fprintf(out, "%s: ok (%s)\n", configPath, summary)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "gateway config or policy file (YAML)")
	cmd.Flags().BoolVar(&list, "list", false, "list registered providers, injectors and identity factor kinds")
	return cmd
}

// printWarnings prints each of ws as "FILE:LINE:COL: warning: MESSAGE".
func printWarnings(w io.Writer, ws policy.ErrorList) {
	for _, e := range ws {
		fmt.Fprintf(w, "%s:%d:%d: warning: %s\n", e.File, e.Line, e.Col, e.Msg)
	}
}

// printRegistry lists what this binary has compiled in.
func printRegistry(w io.Writer) {
	fmt.Fprintf(w, "providers:  %s\n", strings.Join(providers.Names(), ", "))
	fmt.Fprintf(w, "injectors:  %s\n", strings.Join(injectors.Names(), ", "))
	fmt.Fprintf(w, "factors:    %s\n", strings.Join(identity.Names(), ", "))
	fmt.Fprintf(w, "actions:    %s, %s, %s\n", policy.Deny, policy.Tunnel, policy.Inject)
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
