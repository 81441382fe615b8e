package cli

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/credgate/credgate/gateway"
)

// loadCase is one config or policy of the validate ≡ load table: the
// good gateway config of gatewayDir with one change.
type loadCase struct {
	name string
	// config, when set, replaces the line of the good config that starts
	// with its first key ("listen: ..." replaces "listen: ...") or, when
	// no line does, is appended.
	config string
	// policy, when set, is the policy file's whole text.
	policy string
	// validateOnly: a refusal validate makes and serve, by design, does
	// not (docs/cli.md#validate: a credential's env: or file: that is
	// missing fails the credential's requests, not the start).
	validateOnly bool
}

// goodPolicy is testdata/good-policy.yaml with one substitution.
func goodPolicy(t *testing.T, old, new string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "good-policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("good-policy.yaml has no %q", old)
	}
	return strings.Replace(string(b), old, new, 1)
}

// loadCases are the good config and policy and each kind of invalid one.
func loadCases(t *testing.T) []loadCase {
	p := func(old, new string) string { return goodPolicy(t, old, new) }
	return []loadCase{
		{name: "good"},
		// The gateway config.
		{name: "config unknown key", config: "listn: 127.0.0.1:0"},
		{name: "config bad type", config: "listen: [127.0.0.1:0]"},
		{name: "config bad duration", config: "shutdown_timeout: 5 parsecs"},
		{name: "config negative duration", config: "shutdown_timeout: -5s"},
		{name: "config bad listen address", config: "listen: nohost"},
		{name: "config bad log level", config: "log:\n  level: loud"},
		{name: "config tls_listen without tls", config: "tls_listen: 127.0.0.1:0"},
		{name: "config policy file missing", config: "policy: no-such-policy.yaml"},
		{name: "config ca file missing", config: "ca:\n  cert: ca/no-such.pem\n  key: ca/ca-key.pem"},
		{name: "config unknown signer plugin", config: "audit:\n  checkpoint:\n    signer:\n      no-such-signer: {}"},
		{name: "config unknown identity verifier", config: "identity:\n  verifiers:\n    no-such-verifier: {}"},
		{name: "config syntax error", config: "listen: [unclosed"},
		// The policy.
		{name: "policy unknown top-level key", policy: p("default: deny", "defaults: deny")},
		{name: "policy unknown rule key", policy: p("    methods: [GET, POST]", "    methds: [GET, POST]")},
		{name: "policy bad type", policy: p("    methods: [GET, POST]", "    methods: 5")},
		{name: "policy dangling destination", policy: p("    to: stripe", "    to: no-such-destination")},
		{name: "policy dangling workload", policy: p("    from: billing-api", "    from: no-such-workload")},
		{name: "policy dangling credential", policy: p("      credential: stripe-live", "      credential: no-such-credential")},
		{name: "policy unknown provider", policy: p("    provider: static\n    env: CREDGATE_TEST_STRIPE_KEY", "    provider: no-such-provider\n    env: CREDGATE_TEST_STRIPE_KEY")},
		{name: "policy unknown injector", policy: p("      as: bearer", "      as: no-such-injector")},
		{name: "policy bad provider setting", policy: p("    env: CREDGATE_TEST_STRIPE_KEY", "    env: CREDGATE_TEST_STRIPE_KEY\n    no_such_setting: 1")},
		{name: "policy bad CIDR", policy: p("cidrs: [10.1.0.0/16]", "cidrs: [10.1.0.0/33]")},
		{name: "policy bad rate", policy: p("rate_limit: {rps: 50}", "rate_limit: {rps: -50}")},
		{name: "policy conflicting action and inject", policy: p("    action: tunnel", "    action: tunnel\n    inject: {credential: stripe-live, as: bearer}")},
		{name: "policy bad condition", policy: p("    paths: [/v1/charges*, /v1/customers*]", "    paths: [/v1/charges*, /v1/customers*]\n    when: 'request.method =='")},
		{name: "policy duplicate rule", policy: p("  - name: partner-plain", "  - name: billing-charges")},
		{name: "policy syntax error", policy: p("default: deny", "default: [deny")},
		{name: "policy tab indentation", policy: p("    to: stripe", "\tto: stripe")},
		{name: "policy bad default", policy: p("default: deny", "default: allow")},
		{name: "policy static env unset", policy: p("env: CREDGATE_TEST_STRIPE_KEY", "env: CREDGATE_TEST_UNSET_KEY"), validateOnly: true},
	}
}

// writeLoadCase writes c over the files of gatewayDir and returns the
// config's path.
func writeLoadCase(t *testing.T, c loadCase) string {
	t.Helper()
	path := gatewayDir(t)
	dir := filepath.Dir(path)
	if c.policy != "" {
		if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(c.policy), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if c.config != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		key, _, _ := strings.Cut(c.config, ":")
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		var out []string
		replaced := false
		for i := 0; i < len(lines); i++ {
			if strings.HasPrefix(lines[i], key+":") {
				out = append(out, c.config)
				replaced = true
				for i+1 < len(lines) && strings.HasPrefix(lines[i+1], " ") {
					i++ // the replaced key's block
				}
				continue
			}
			out = append(out, lines[i])
		}
		if !replaced {
			out = append(out, c.config)
		}
		if err := os.WriteFile(path, []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// serveStart is what `credgate serve -c path` refuses at start ("" when
// it starts): the CLI's config load, then the gateway's.
func serveStart(t *testing.T, path string) string {
	t.Helper()
	cfg, err := loadConfig(path)
	if err != nil {
		return err.Error()
	}
	gw, err := gateway.New(context.Background(), cfg, gateway.Options{})
	if err != nil {
		return err.Error()
	}
	gw.Close()
	return ""
}

// reload is what a running gateway with the good policy refuses when
// the policy file becomes the one at path's policy ("" when it reloads).
func reload(t *testing.T, c loadCase) string {
	t.Helper()
	path := gatewayDir(t)
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(context.Background(), cfg, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	if err := os.WriteFile(cfg.PolicyPath(), []byte(c.policy), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := gw.ReloadPolicy(context.Background()); err != nil {
		// Named as the case's directory names it: DIR.
		return strings.ReplaceAll(err.Error(), filepath.Dir(path), "DIR")
	}
	return ""
}

// TestValidateAcceptsWhatServeAccepts: for the good config and policy and
// each kind of invalid one (loadCases), `credgate validate` accepts
// exactly what `serve` starts with (and, for a policy, what a running
// gateway reloads), and every problem validate prints is in the error
// serve (and the reload) fails with, word for word.
func TestValidateAcceptsWhatServeAccepts(t *testing.T) {
	setEnv(t)
	failed := 0
	cases := loadCases(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeLoadCase(t, c)
			v := runCLI(t, "validate", "-c", path)
			serveErr := serveStart(t, path)
			bad := func(format string, args ...any) {
				t.Helper()
				failed++
				t.Errorf(format, args...)
			}
			var problems []string
			for _, l := range strings.Split(strings.TrimSpace(v.stdout+v.stderr), "\n") {
				if l != "" && !strings.Contains(l, ": ok (") && !strings.Contains(l, ": warning: ") {
					problems = append(problems, strings.TrimPrefix(l, "credgate: "))
				}
			}
			switch {
			case c.validateOnly:
				if v.code == 0 || serveErr != "" {
					bad("validate exit %d, serve %q: want validate to refuse and serve to start", v.code, serveErr)
				}
				return
			case (v.code == 0) != (serveErr == ""):
				bad("validate exit %d (%s), serve refused: %q", v.code, strings.TrimSpace(v.stdout+v.stderr), serveErr)
				return
			}
			for _, pr := range problems {
				if !strings.Contains(serveErr, pr) {
					bad("validate says %q, serve says %q", pr, serveErr)
				}
			}
			if c.policy == "" {
				return
			}
			re := reload(t, c)
			if (re == "") != (v.code == 0) {
				bad("validate exit %d, reload refused: %q", v.code, re)
				return
			}
			for _, pr := range problems {
				if pr := strings.ReplaceAll(pr, filepath.Dir(path), "DIR"); !strings.Contains(re, pr) {
					bad("validate says %q, the reload says %q", pr, re)
				}
			}
		})
	}
	t.Logf("%d disagreements over %d configs and policies", failed, len(cases))
}

// locationRE is a problem's position, FILE:LINE:COL or FILE:LINE.
var locationRE = regexp.MustCompile(`^(\S+\.yaml):(\d+)(:\d+)?: `)

// TestValidateErrorsNameLocationCauseFix: every problem validate prints
// for the invalid configs and policies of loadCases names the file and
// the line the problem is at, and says what to change (the message goes
// on past the cause: a known-values list, a hint, an instruction).
func TestValidateErrorsNameLocationCauseFix(t *testing.T) {
	setEnv(t)
	failed, total := 0, 0
	// Words that say what to do, or list the values to choose from.
	fixWords := regexp.MustCompile(`(?i)(\b(known|available|want|use|set|give|remove|rename|write|add|create|name|must|needs|hint|expected|one of|allowed|valid|instead|fix|declare|define|choose|indent|close|put|keep|quote|either|replace|build|correct|make)\b|e\.g\.)`)
	for _, c := range loadCases(t) {
		if c.name == "good" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			path := writeLoadCase(t, c)
			v := runCLI(t, "validate", "-c", path)
			for _, l := range strings.Split(strings.TrimSpace(v.stdout+v.stderr), "\n") {
				l = strings.TrimPrefix(l, "credgate: ")
				if l == "" || strings.Contains(l, ": warning: ") {
					continue
				}
				total++
				m := locationRE.FindStringSubmatch(l)
				if m == nil {
					failed++
					t.Errorf("no FILE:LINE: %s", l)
					continue
				}
				if !fixWords.MatchString(l[len(m[0]):]) {
					failed++
					t.Errorf("says no fix: %s", l)
				}
			}
		})
	}
	t.Logf("%d of %d problems lack a location or a fix", failed, total)
}
