package deptest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/credgate/credgate"

// rule forbids packages under From from depending, directly or
// transitively, on packages under any key of BadDeps.
type rule struct {
	// From is a package path relative to the module; it covers its
	// sub-packages.
	From string
	// BadDeps maps a forbidden package (relative, covering sub-packages) to
	// why it is forbidden.
	BadDeps map[string]string
	// Except maps packages under From (relative, exact) that the rule
	// does not cover to why: test helpers never linked into the gateway.
	Except map[string]string
}

// stages are the request-path packages; none of them knows the wiring.
var stages = []string{"identity", "policy", "providers", "injectors", "transform"}

func rules() []rule {
	wiring := map[string]string{
		"gateway": "stages are wired by gateway; a stage importing it inverts the request path",
		"cmd":     "cmd is the binary; libraries never import main packages",
		"cli":     "cli is the command line; the request path never depends on it",
	}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range wiring {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	return []rule{
		{From: "identity", BadDeps: with(map[string]string{
			"providers": "identity verifies who is calling; credentials come later in the path",
			"policy":    "policy consumes identity (as []identity.Spec), not the other way round",
			"injectors": "identity must not know how requests are rewritten",
		})},
		{From: "providers", BadDeps: with(map[string]string{
			"policy":    "providers fetch credentials; they must not decide access",
			"injectors": "injectors consume providers.Credential; providers must not know them",
		}), Except: map[string]string{
			"providers/providertest": "the conformance kit parses a policy to check that a provider's setting errors carry FILE:LINE:COL; only tests import it",
		}},
		{From: "injectors", BadDeps: with(map[string]string{
			"policy": "injectors rewrite a request with a credential; they must not decide access",
		})},
		{From: "policy", BadDeps: with(nil)},
		{From: "killswitch", BadDeps: with(map[string]string{
			"policy":    "the kill switch holds names; the gateway matches them against decisions",
			"identity":  "the kill switch holds names; the gateway matches them against decisions",
			"providers": "the kill switch must not know where credentials come from",
			"injectors": "the kill switch must not know how requests are rewritten",
		})},
		{From: "ratelimit", BadDeps: with(map[string]string{
			"policy":    "the limiter counts requests against limits it is given; the gateway reads them from the policy",
			"identity":  "limits are keyed by names the gateway chooses, not by identities",
			"providers": "rate limiting knows nothing of credentials",
		})},
		{From: "secret", BadDeps: with(map[string]string{
			"policy":    "secret is the leaf both identity and providers keep values in; it depends on no stage",
			"identity":  "secret is the leaf both identity and providers keep values in; it depends on no stage",
			"providers": "secret is the leaf both identity and providers keep values in; it depends on no stage",
			"injectors": "secret is the leaf both identity and providers keep values in; it depends on no stage",
		})},
		{From: "internal/headerset", BadDeps: with(map[string]string{
			"policy":    "header sets are names shared by the gateway and injectors; they know no stage",
			"identity":  "header sets are names shared by the gateway and injectors; they know no stage",
			"providers": "header sets are names shared by the gateway and injectors; they know no stage",
			"injectors": "injectors import the header sets, not the other way round",
		})},
		{From: "internal/fleet", BadDeps: with(map[string]string{
			"policy":    "fleet state is plumbing for Redis-backed features; it knows no stage",
			"identity":  "fleet state is plumbing for Redis-backed features; it knows no stage",
			"providers": "fleet state is plumbing for Redis-backed features; it knows no stage",
			"injectors": "fleet state is plumbing for Redis-backed features; it knows no stage",
		})},
		{From: "internal/writable", BadDeps: with(map[string]string{
			"policy":     "the writability check is a leaf the kill switch and the gateway share; it knows no stage",
			"identity":   "the writability check is a leaf the kill switch and the gateway share; it knows no stage",
			"providers":  "the writability check is a leaf the kill switch and the gateway share; it knows no stage",
			"injectors":  "the writability check is a leaf the kill switch and the gateway share; it knows no stage",
			"killswitch": "the kill switch imports the writability check, not the other way round",
		})},
		{From: "internal/canonical", BadDeps: with(map[string]string{
			"policy":    "the canonical request is computed before any stage; it must depend on none",
			"identity":  "the canonical request is computed before any stage; it must depend on none",
			"providers": "the canonical request is computed before any stage; it must depend on none",
			"injectors": "the canonical request is computed before any stage; it must depend on none",
		})},
		{From: "internal/fairlru", BadDeps: with(map[string]string{
			"policy":    "the fair cache is plumbing the leaf and credential caches share; it knows no stage",
			"identity":  "the fair cache is plumbing the leaf and credential caches share; it knows no stage",
			"providers": "providers import the fair cache, not the other way round",
			"injectors": "the fair cache is plumbing the leaf and credential caches share; it knows no stage",
		})},
		{From: "internal/batch", BadDeps: with(map[string]string{
			"policy":             "the sub-requests of a batch are read before they are judged; the reader judges nothing",
			"identity":           "the batch reader knows no stage",
			"providers":          "the batch reader knows no stage",
			"injectors":          "the batch reader knows no stage",
			"internal/canonical": "the gateway canonicalises sub-requests with the code of top-level requests; the reader must not grow a second canonicaliser",
		})},
		// No plugin imports another plugin: shared pieces are packages of
		// their own. (providers/jwtsign still reaches providers/vault for
		// its transit client; that client is to move to a package of its own.)
		{From: "providers/githubapp", BadDeps: with(map[string]string{
			"providers/oauth2": "no plugin imports another plugin; JWT signing is providers/jwtsign",
			"providers/awssts": "no plugin imports another plugin",
			"providers/static": "no plugin imports another plugin",
		})},
		{From: "providers/jwtsign", BadDeps: with(map[string]string{
			"providers/oauth2":     "jwtsign is shared by plugins; it must not depend on one of them",
			"providers/githubapp":  "jwtsign is shared by plugins; it must not depend on one of them",
			"providers/google":     "jwtsign is shared by plugins; it must not depend on one of them",
			"providers/snowflake":  "jwtsign is shared by plugins; it must not depend on one of them",
			"providers/salesforce": "jwtsign is shared by plugins; it must not depend on one of them",
			"providers/awssts":     "jwtsign is shared by plugins; it must not depend on one of them",
			"providers/static":     "jwtsign is shared by plugins; it must not depend on one of them",
			"injectors":            "jwtsign signs for providers; it must not know injectors",
		})},
		{From: "providers/oauth2", BadDeps: with(map[string]string{
			"providers/githubapp": "no plugin imports another plugin",
			"providers/google":    "no plugin imports another plugin",
		})},
		{From: "providers/google", BadDeps: with(map[string]string{
			"providers/oauth2":    "no plugin imports another plugin; JWT signing is providers/jwtsign",
			"providers/githubapp": "no plugin imports another plugin",
			"providers/awssts":    "no plugin imports another plugin",
			"providers/static":    "no plugin imports another plugin",
		})},
		{From: "providers/snowflake", BadDeps: with(map[string]string{
			"providers/oauth2":        "no plugin imports another plugin; JWT signing is providers/jwtsign",
			"providers/githubapp":     "no plugin imports another plugin",
			"providers/google":        "no plugin imports another plugin",
			"providers/salesforce":    "no plugin imports another plugin",
			"providers/static":        "no plugin imports another plugin",
			"internal/snowflaketest":  "test fakes are for tests",
			"internal/salesforcetest": "test fakes are for tests",
		})},
		{From: "providers/salesforce", BadDeps: with(map[string]string{
			"providers/oauth2":        "no plugin imports another plugin; JWT signing is providers/jwtsign",
			"providers/githubapp":     "no plugin imports another plugin",
			"providers/google":        "no plugin imports another plugin",
			"providers/snowflake":     "no plugin imports another plugin",
			"providers/static":        "no plugin imports another plugin",
			"internal/snowflaketest":  "test fakes are for tests",
			"internal/salesforcetest": "test fakes are for tests",
		})},
		{From: "providers/azure", BadDeps: with(map[string]string{
			"providers/oauth2":    "no plugin imports another plugin; JWT signing is providers/jwtsign",
			"providers/google":    "no plugin imports another plugin",
			"providers/githubapp": "no plugin imports another plugin",
			"providers/static":    "no plugin imports another plugin",
			"internal/azuretest":  "test fakes are for tests",
			"injectors":           "providers fetch credentials; they must not know how requests are rewritten",
		})},
		{From: "injectors/azuresharedkey", BadDeps: with(map[string]string{
			"injectors/sigv4":    "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/hmac":     "no plugin imports another plugin; shared pieces live in package injectors",
			"providers/azure":    "no plugin imports another plugin",
			"internal/azuretest": "test fakes are for tests",
		})},
		{From: "transform", BadDeps: with(map[string]string{
			"policy":    "transform rewrites what a decision allows; it is handed bindings, it does not decide",
			"identity":  "transform is handed the bindings for one caller; it must not know how callers are verified (so it takes secret.Value, not providers.Credential, since providers imports identity)",
			"injectors": "transform is a stage beside injectors; the gateway runs both",
		})},
		{From: "injectors/hmac", BadDeps: with(map[string]string{
			"injectors/sigv4":       "no plugin imports another plugin",
			"providers/static":      "no plugin imports another plugin",
			"internal/exchangetest": "test fakes are for tests",
		})},
		{From: "injectors/openai", BadDeps: with(map[string]string{
			"injectors/anthropic": "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/gemini":    "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/hmac":      "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/sigv4":     "no plugin imports another plugin; shared pieces live in package injectors",
		})},
		{From: "injectors/anthropic", BadDeps: with(map[string]string{
			"injectors/openai": "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/gemini": "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/hmac":   "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/sigv4":  "no plugin imports another plugin; shared pieces live in package injectors",
		})},
		{From: "injectors/gemini", BadDeps: with(map[string]string{
			"injectors/openai":    "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/anthropic": "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/hmac":      "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/sigv4":     "no plugin imports another plugin; shared pieces live in package injectors",
		})},
		{From: "injectors/stripe", BadDeps: with(map[string]string{
			"injectors/openai":    "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/anthropic": "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/gemini":    "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/hmac":      "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/sigv4":     "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/twilio":    "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/slack":     "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/datadog":   "no plugin imports another plugin; shared pieces live in package injectors",
			"providers/slack":     "no plugin imports another plugin; the injector reads only the credential",
		})},
		{From: "injectors/twilio", BadDeps: with(map[string]string{
			"injectors/openai":    "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/anthropic": "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/gemini":    "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/hmac":      "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/sigv4":     "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/stripe":    "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/slack":     "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/datadog":   "no plugin imports another plugin; shared pieces live in package injectors",
			"providers/slack":     "no plugin imports another plugin; the injector reads only the credential",
		})},
		{From: "injectors/slack", BadDeps: with(map[string]string{
			"injectors/openai":    "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/anthropic": "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/gemini":    "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/hmac":      "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/sigv4":     "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/stripe":    "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/twilio":    "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/datadog":   "no plugin imports another plugin; shared pieces live in package injectors",
			"providers/slack":     "no plugin imports another plugin; the injector reads only the credential",
		})},
		{From: "injectors/datadog", BadDeps: with(map[string]string{
			"injectors/openai":    "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/anthropic": "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/gemini":    "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/hmac":      "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/sigv4":     "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/stripe":    "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/twilio":    "no plugin imports another plugin; shared pieces live in package injectors",
			"injectors/slack":     "no plugin imports another plugin; shared pieces live in package injectors",
			"providers/slack":     "no plugin imports another plugin; the injector reads only the credential",
		})},
		{From: "providers/slack", BadDeps: with(map[string]string{
			"injectors":        "providers must not know how credentials are put on requests",
			"providers/static": "no plugin imports another plugin; the source credential is a Composer input",
			"providers/oauth2": "no plugin imports another plugin",
		})},
		{From: "audit", BadDeps: with(map[string]string{
			"policy":    "the audit writer gets encoded lines; what decided them is the gateway's business",
			"identity":  "the audit writer gets encoded lines; who called is the gateway's business",
			"providers": "the audit log never sees a credential; the gateway passes its fingerprint's input",
			"injectors": "the audit writer must not know how requests are rewritten",
		})},
		{From: "internal/tracing", BadDeps: with(map[string]string{
			"policy":    "spans get the names the gateway hands them; deciding is the gateway's business",
			"identity":  "spans get the workload's name from the gateway; verifying is identity's business",
			"providers": "spans never see a credential, only its name; a fetch is wrapped as an opaque function",
			"injectors": "spans must not know how requests are rewritten",
		})},
		{From: "gateway/internal/h1", BadDeps: with(map[string]string{
			"gateway":   "the HTTP/1.1 server is machinery behind an http.Handler; the gateway hands it connections, not the other way round",
			"policy":    "the HTTP/1.1 server serves requests with a handler it is given; deciding is the handler's business",
			"identity":  "the HTTP/1.1 server serves requests with a handler it is given; who calls is the handler's business",
			"providers": "the HTTP/1.1 server never sees a credential",
			"injectors": "the HTTP/1.1 server must not know how requests are rewritten",
		})},
		{From: "gateway/internal/h1client", BadDeps: with(map[string]string{
			"gateway":   "the HTTP/1.1 upstream client is machinery the gateway hands a dialler, not the other way round",
			"policy":    "the upstream client sends what it is given; deciding is the gateway's business",
			"identity":  "the upstream client sends what it is given; who calls is the gateway's business",
			"providers": "the upstream client never fetches a credential",
			"injectors": "the upstream client must not know how requests are rewritten",
		})},
		{From: "gateway/internal/tickets", BadDeps: with(map[string]string{
			"gateway":   "ticket keys are machinery the gateway hands its TLS configurations to",
			"policy":    "ticket keys resume TLS sessions; deciding stays per request",
			"identity":  "ticket keys never carry or decide an identity",
			"providers": "ticket keys never see a credential",
			"injectors": "ticket keys must not know how requests are rewritten",
		})},
		{From: "internal/freeport", BadDeps: with(map[string]string{
			"policy":    "ports for the peers tests start; it knows no stage",
			"identity":  "ports for the peers tests start; it knows no stage",
			"providers": "ports for the peers tests start; it knows no stage",
			"injectors": "ports for the peers tests start; it knows no stage",
		})},
		{From: "internal/runrelay", BadDeps: with(map[string]string{
			"gateway":   "credgate run's relay is the client side of the proxy listener: it forwards bytes and never decides",
			"policy":    "the relay forwards to the gateway, which decides",
			"identity":  "the relay presents a token; the gateway verifies it",
			"providers": "the relay never sees a credential to a destination",
			"injectors": "the relay must not know how requests are rewritten",
		})},
		{From: "gateway", BadDeps: map[string]string{
			"cmd":               wiring["cmd"],
			"cli":               wiring["cli"],
			"internal/freeport": "test plumbing: the gateway listens where its config says",
		}},
		// The set of compiled-in plugins is the main package's list of
		// blank imports (cmd/credgate, examples/custom-build): a cli that
		// imported a plugin would force it into every custom build.
		{From: "cli", BadDeps: map[string]string{
			"cmd":                      wiring["cmd"],
			"injectors/all":            "the main package chooses the compiled-in injectors",
			"providers/all":            "the main package chooses the compiled-in providers",
			"injectors/azuresharedkey": "plugins are chosen by the main package's imports",
			"injectors/sigv4":          "plugins are chosen by the main package's imports",
			"providers/awssts":         "plugins are chosen by the main package's imports",
			"providers/azure":          "plugins are chosen by the main package's imports",
			"providers/githubapp":      "plugins are chosen by the main package's imports",
			"providers/google":         "plugins are chosen by the main package's imports",
			"providers/oauth2":         "plugins are chosen by the main package's imports",
			"providers/salesforce":     "plugins are chosen by the main package's imports",
			"providers/snowflake":      "plugins are chosen by the main package's imports",
			"providers/static":         "plugins are chosen by the main package's imports",
			"providers/vault":          "plugins are chosen by the main package's imports",
		}},
	}
}

// pkg is the part of `go list -json` output this test reads.
type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
}

// under reports whether path is the module package rel or one below it.
func under(path, rel string) bool {
	p := module + "/" + rel
	return path == p || strings.HasPrefix(path, p+"/")
}

func listPackages(t *testing.T) map[string]*pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	pkgs := map[string]*pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := new(pkg)
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs
}

// chain returns an import path from 'from' to 'to' through module packages,
// for the error message.
func chain(pkgs map[string]*pkg, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var path []string
			for p := cur; p != ""; p = prev[p] {
				path = append([]string{p}, path...)
			}
			return path
		}
		p, ok := pkgs[cur]
		if !ok {
			continue
		}
		for _, imp := range p.Imports {
			if _, seen := prev[imp]; !seen && strings.HasPrefix(imp, module) {
				prev[imp] = cur
				queue = append(queue, imp)
			}
		}
	}
	return []string{from, "...", to}
}

func TestDeps(t *testing.T) {
	pkgs := listPackages(t)

	// The rules would pass vacuously if the packages vanished.
	for _, s := range append(stages, "gateway") {
		if _, ok := pkgs[module+"/"+s]; !ok {
			t.Errorf("package %s/%s not found by go list; update the dependency rules if it moved", module, s)
		}
	}

	var paths []string
	for path := range pkgs {
		paths = append(paths, path)
	}
	sort.Strings(paths)

	for _, r := range rules() {
		for _, path := range paths {
			if !under(path, r.From) {
				continue
			}
			if _, ok := r.Except[strings.TrimPrefix(path, module+"/")]; ok {
				continue
			}
			p := pkgs[path]
			// Deps is the transitive closure, direct imports included.
			for _, dep := range p.Deps {
				for bad, why := range r.BadDeps {
					if under(dep, bad) {
						t.Errorf("%s must not depend on %s: %s\n\timport chain: %s",
							path, dep, why, strings.Join(chain(pkgs, path, dep), " -> "))
					}
				}
			}
		}
	}
}

// TestRulesMatchLayout keeps the rule table itself honest: every From and
// BadDeps key names a directory that is a package prefix in the module.
func TestRulesMatchLayout(t *testing.T) {
	pkgs := listPackages(t)
	exists := func(rel string) bool {
		for path := range pkgs {
			if under(path, rel) {
				return true
			}
		}
		return false
	}
	for _, r := range rules() {
		if !exists(r.From) {
			t.Errorf("rule From %q matches no package", r.From)
		}
		for bad := range r.BadDeps {
			if !exists(bad) {
				t.Errorf("rule %q: BadDeps key %q matches no package", r.From, bad)
			}
		}
	}
}
