package suggest

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/policy"
)

// fuzzBase is recordedPolicy with a second inject rule, with another
// credential, to the same host.
var fuzzBase = strings.NewReplacer(
	"credentials:\n", "credentials:\n  stripe-refunds:\n    provider: static\n    env: CREDGATE_SUGGEST_TEST_KEY\n",
	"default: deny\n", `  - name: refunds
    from: billing
    to: stripe
    methods: [POST]
    paths: [/v1/refunds*]
    inject: {credential: stripe-refunds, as: bearer}
default: deny
`).Replace(recordedPolicy)

// Choices the fuzzer's bytes pick from: hosts, paths, methods and
// workloads a gateway writes, and hostile ones it never does.
var (
	fuzzWorkloads = []string{"billing", "anonymous", "*", "bil ling", "0x1F"}
	fuzzDecisions = []string{"inject", "would_deny", "tunnel", "forward", "deny"}
	fuzzMethods   = []string{"GET", "POST", "*A", "#", "get", "CONNECT", "G\nET"}
	fuzzHosts     = []string{"api.stripe.com", "intake.example.com", "*.com", "a.test/x", "127.0.0.1", "yes", "API.stripe.com"}
	fuzzSegments  = []string{"v1", "charges", "refunds", "ch_3MmlLrLkdIwHu7ix", "123", "%2F", "%41", "%C3%A9", "%FF", "*", "{a}", ";x", "..", "a%3Fb", "?x", "0x1F", "yes", " "}
	fuzzRules     = []string{"charges", "refunds", "missing"}
)

func fuzzRecords(data []byte) []audit.Record {
	pick := func(i *int, list []string) string {
		if *i >= len(data) {
			return list[0]
		}
		v := list[int(data[*i])%len(list)]
		*i++
		return v
	}
	var recs []audit.Record
	for i := 0; i < len(data) && len(recs) < 40; {
		r := audit.Record{Pos: audit.Pos{File: "f.log", Line: len(recs) + 1}, Time: time.Date(2026, 12, 2, 6, len(recs), 0, 0, time.UTC), Source: "10.1.2.3", Scheme: "https", Port: 443}
		r.Workload, r.Decision, r.Method, r.Host = pick(&i, fuzzWorkloads), pick(&i, fuzzDecisions), pick(&i, fuzzMethods), pick(&i, fuzzHosts)
		n := 1
		if i < len(data) {
			n = 1 + int(data[i])%4
			i++
		}
		if r.Method != "CONNECT" {
			for range n {
				r.Path += "/" + pick(&i, fuzzSegments)
			}
		}
		if r.Decision == "inject" {
			r.Rule = pick(&i, fuzzRules)
			r.Credential = map[string]string{"charges": "stripe-live", "refunds": "stripe-refunds"}[r.Rule]
		}
		recs = append(recs, r)
	}
	return recs
}

// suggested is the part of a suggested policy the fuzz test checks.
type suggested struct {
	Destinations map[string]struct {
		Hosts []string `yaml:"hosts"`
	} `yaml:"destinations"`
	Rules []struct {
		Name    string   `yaml:"name"`
		From    string   `yaml:"from"`
		To      string   `yaml:"to"`
		Methods []string `yaml:"methods"`
		Inject  *struct {
			Credential string `yaml:"credential"`
		} `yaml:"inject"`
	} `yaml:"rules"`
}

// FuzzSuggest: for any audit lines, Write returns an error or a policy
// the real loader accepts, and never panics. The policy (a) admits every
// line that went through, replayed through the gateway's decision path
// (gateway/replay), with the credential recorded for an injected one,
// unless a comment lists it as not allowed; and (b) allows nothing
// broader: its callers, hosts, methods and credentials are ones the
// admitted lines name for that caller and host, never `from: "*"`, and a
// method or host never seen is refused. A line with a value the gateway
// never writes (a wildcard host, a workload "*", a lower-case method) is
// an error naming it, not a rule.
func FuzzSuggest(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 2, 3, 4, 0})
	f.Add([]byte{0, 1, 1, 0, 1, 2, 0, 1, 0, 1, 0, 1, 2, 1})
	f.Add([]byte{0, 0, 0, 0, 1, 1, 3, 0, 0, 0, 1, 0, 1, 2, 1, 1, 0, 1, 1, 0, 1, 2, 1})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 2, 0, 0, 4})
	f.Add([]byte{2, 1, 0, 2, 0, 0, 0, 3, 1, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		t.Setenv("CREDGATE_SUGGEST_TEST_KEY", "sk_test_suggest")
		recs := fuzzRecords(data)
		var out bytes.Buffer
		if err := Write(&out, recs, Options{BaseFile: "base.yaml", Base: []byte(fuzzBase), Now: time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)}); err != nil {
			if !strings.HasPrefix(err.Error(), "suggest: ") || strings.Contains(err.Error(), "base policy base.yaml: yaml:") {
				t.Fatalf("Write: %v", err)
			}
			return
		}
		got := out.String()
		p, err := policy.Parse(context.Background(), "suggested.yaml", out.Bytes())
		if err != nil {
			t.Fatalf("the suggestion does not load: %v\n%s", err, got)
		}
		defer p.Close()
		type gk struct{ wl, host string }
		seenMethods, seenCreds := map[gk]map[string]bool{}, map[gk]map[string]bool{}
		for _, r := range recs {
			if !admitted[r.Decision] {
				continue
			}
			if err := r.Check(); err != nil {
				t.Fatalf("Write took a line that fails Check: %v", err)
			}
			k := gk{r.Workload, r.Host}
			if seenMethods[k] == nil {
				seenMethods[k], seenCreds[k] = map[string]bool{}, map[string]bool{}
			}
			seenMethods[k][r.Method] = true
			if r.Decision == "inject" {
				seenCreds[k][r.Credential] = true
			}
			o := decide(t, p, r)
			listed := strings.Contains(got, strconv.Quote(r.Path)) || strings.Contains(got, "# not allowed: "+r.Method+" "+r.Scheme+"://"+r.Host) ||
				o.Code == "private_address" && strings.Contains(got, "# "+r.Host+" is an IP literal: if it is a special-purpose address")
			switch {
			case r.Decision == "inject" && !listed && (o.Decision != "inject" || o.Credential != r.Credential):
				t.Errorf("%s %s%s injected %s: %s under the suggestion\n%s", r.Method, r.Host, r.Path, r.Credential, o, got)
			case o.Decision == "deny" && !listed:
				t.Errorf("%s %s %s%s (%s): %s under the suggestion, and no comment lists it\n%s", r.Workload, r.Method, r.Host, r.Path, r.Decision, o, got)
			}
			for _, probe := range []audit.Record{{Method: "PATCH", Host: r.Host, Path: "/v1/charges"}, {Method: r.Method, Host: "unseen.example.com", Path: "/v1/charges"}} {
				probe.Workload, probe.Source, probe.Scheme, probe.Port, probe.Time = r.Workload, r.Source, r.Scheme, r.Port, r.Time
				if probe.Method == "CONNECT" {
					probe.Path = ""
				}
				// A tunnel rule (from a spliced or forwarded line) opens
				// the whole host: that is what was seen (documented).
				if o := decide(t, p, probe); o.Decision != "deny" && (probe.Host != r.Host || o.Decision != "tunnel" && o.Decision != "forward") {
					t.Errorf("%s %s %s%s, never seen: %s under the suggestion\n%s", probe.Workload, probe.Method, probe.Host, probe.Path, o, got)
				}
			}
		}
		var s suggested
		if err := yaml.Unmarshal(out.Bytes(), &s); err != nil {
			t.Fatal(err)
		}
		for _, rl := range s.Rules {
			for _, h := range s.Destinations[rl.To].Hosts {
				k := gk{rl.From, h}
				if seenMethods[k] == nil {
					t.Errorf("rule %s: from %q to host %q, never seen together\n%s", rl.Name, rl.From, h, got)
					continue
				}
				for _, m := range rl.Methods {
					if !seenMethods[k][m] {
						t.Errorf("rule %s: method %q never seen from %s to %s\n%s", rl.Name, m, rl.From, h, got)
					}
				}
				if rl.Inject != nil && !seenCreds[k][rl.Inject.Credential] {
					t.Errorf("rule %s: credential %q never injected from %s to %s\n%s", rl.Name, rl.Inject.Credential, rl.From, h, got)
				}
			}
		}
	})
}
