package policy

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/identity"
)

const placeholderPolicy = `
workloads:
  agent: {cidrs: [10.0.0.0/8]}
  ci: {cidrs: [192.168.0.0/16]}
destinations:
  tg: {hosts: [api.telegram.org]}
  slack: {hosts: [slack.com]}
credentials:
  tg-bot:
    provider: policytest
    value: v1
    placeholder: CREDGATE_PH_tg_bot
  slack-bot:
    provider: policytest
    value: v2
    placeholder: {generate: per_workload, field: token}
placeholders:
  quarantine: true
  seed: 0123456789abcdef0123
rules:
  - name: tg
    from: [agent]
    to: tg
    inject: {credential: tg-bot, as: policytest-inj}
    require_placeholder: true
  - name: slack
    from: "*"
    to: slack
    inject: {credential: slack-bot, as: policytest-inj}
default: deny
`

func TestPlaceholders(t *testing.T) {
	p := mustParse(t, placeholderPolicy)
	if !p.Quarantine() {
		t.Error("Quarantine() = false, want true")
	}
	agent := identity.Workload{Name: "agent"}
	d := p.Decide(Query{Workload: agent, Scheme: "https", Host: "api.telegram.org", Port: 443, Method: "GET", Path: "/x"})
	if d.Inject == nil || d.Inject.Placeholder == nil || !d.Inject.RequirePlaceholder {
		t.Fatalf("decision %+v: want an inject plan with a required placeholder", d)
	}
	if got := d.Inject.Placeholder.For(agent); got != "CREDGATE_PH_tg_bot" {
		t.Errorf("fixed placeholder = %q", got)
	}
	d = p.Decide(Query{Workload: agent, Scheme: "https", Host: "slack.com", Port: 443, Method: "GET", Path: "/x"})
	if d.Inject == nil || d.Inject.RequirePlaceholder {
		t.Fatalf("decision %+v: want an inject plan without require_placeholder", d)
	}
	ph := d.Inject.Placeholder
	a, c, anon := ph.For(agent), ph.For(identity.Workload{Name: "ci"}), ph.For(identity.Workload{})
	if a == c || a == anon || !strings.HasPrefix(a, GeneratedPrefix) || len(a) != len(GeneratedPrefix)+26 {
		t.Errorf("generated placeholders agent %q, ci %q, anonymous %q: want distinct %s... strings", a, c, anon, GeneratedPrefix)
	}
	// The same policy parsed again (another replica) derives the same.
	if again := mustParse(t, placeholderPolicy); again.Placeholders()[1].Placeholder != p.Placeholders()[1].Placeholder {
		t.Error("generated placeholders differ between two parses of the same policy")
	}
	var got []string
	for _, u := range p.Placeholders() {
		got = append(got, u.Name())
		if u.Workload != "" && u.Placeholder != ph.For(identity.Workload{Name: u.Workload}) && u.Workload != "anonymous" {
			t.Errorf("use %s has another placeholder than For", u.Name())
		}
	}
	want := []string{"tg-bot", "slack-bot@anonymous", "slack-bot@agent", "slack-bot@ci"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Placeholders() names (-want +got):\n%s", diff)
	}
}

func TestPlaceholderErrors(t *testing.T) {
	src := `destinations:
  d: {hosts: [x.test]}
credentials:
  short: {provider: policytest, value: a, placeholder: abc}
  badchar: {provider: policytest, value: a, placeholder: "abc def ghi"}
  first: {provider: policytest, value: a, placeholder: CREDGATE_PH_same}
  second: {provider: policytest, value: a, placeholder: CREDGATE_PH_same}
  gen: {provider: policytest, value: a, placeholder: {generate: per_request}}
  both: {provider: policytest, value: a, placeholder: {generate: per_workload, value: CREDGATE_PH_both}}
  reserved: {provider: policytest, value: a, placeholder: cgph_mine_123}
  none: {provider: policytest, value: a}
placeholders: {quarantine: maybe, seed: short}
rules:
  - {name: r1, from: "*", to: d, inject: {credential: none, as: policytest-inj}, require_placeholder: true}
  - {name: r2, from: "*", to: d, action: tunnel, require_placeholder: true}
default: deny
`
	_, err := Parse(context.Background(), "p.yaml", []byte(src))
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	want := []string{
		`p.yaml:4:56: credential "short" placeholder: length 3 is not between 8 and 256; a placeholder is 8 to 256 bytes of letters, digits, '-', '.', '_' and '~', characters no encoding rewrites`,
		`p.yaml:5:58: credential "badchar" placeholder: byte 3 is not a letter, digit, '-', '.', '_' or '~'; a placeholder is 8 to 256 bytes of letters, digits, '-', '.', '_' and '~', characters no encoding rewrites`,
		`p.yaml:7:57: credential "second" placeholder is already the placeholder of another credential (line 6); each credential needs its own, or a placeholder could not say which secret it stands for`,
		`p.yaml:8:65: credential "gen" placeholder: generate "per_request" is not known; use generate: per_workload`,
		`p.yaml:9:56: credential "both" placeholder: set value or generate, not both`,
		`p.yaml:10:59: credential "reserved" placeholder: "cgph_" is reserved for generated placeholders; choose another prefix`,
		`p.yaml:12:28: placeholders quarantine must be true or false`,
		`p.yaml:12:41: placeholders seed is 5 bytes; use at least 16 random bytes (changing it changes every generated placeholder)`,
		`p.yaml:14:82: rule "r1" (rules[0]): require_placeholder is set but credential "none" declares no placeholder; add placeholder: to the credential or remove require_placeholder`,
		`p.yaml:15:50: rule "r2" (rules[1]): require_placeholder applies only to inject rules; remove it`,
	}
	got := strings.Split(err.Error(), "\n")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

// TestSubstituteIn: a rule's substitute_in becomes the plan's places (a
// header name canonical, a JSON pointer as written); a placeholder rule
// without one gets DefaultSubstituteIn and a warning at its inject key;
// a rule whose credential has no placeholder gets neither.
func TestSubstituteIn(t *testing.T) {
	src := `destinations:
  d: {hosts: [x.test]}
  e: {hosts: [y.test]}
  f: {hosts: [z.test]}
credentials:
  ph: {provider: policytest, value: a, placeholder: CREDGATE_PH_places}
  plain: {provider: policytest, value: a}
rules:
  - {name: set, from: "*", to: d, inject: {credential: ph, as: policytest-inj, substitute_in: [path, "header:x-api-key", "query:api_key", "form:token", "json:/auth/k~1ey", websocket, basic]}}
  - {name: unset, from: "*", to: e, inject: {credential: ph, as: policytest-inj}}
  - {name: none, from: "*", to: f, inject: {credential: plain, as: policytest-inj}}
default: deny
`
	p := mustParse(t, src)
	plan := func(host string) *InjectPlan {
		d := p.Decide(Query{Workload: identity.Workload{Name: "w"}, Scheme: "https", Host: host, Port: 443, Method: "GET", Path: "/"})
		if d.Inject == nil {
			t.Fatalf("%s: no inject plan", host)
		}
		return d.Inject
	}
	var got []string
	for _, pl := range plan("x.test").SubstituteIn {
		got = append(got, pl.String())
	}
	want := []string{"path", "header:X-Api-Key", "query:api_key", "form:token", "json:/auth/k~1ey", "websocket", "basic"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("places (-want +got):\n%s", diff)
	}
	if pl := plan("x.test"); pl.SubstituteInDefault {
		t.Error("SubstituteInDefault set for a rule naming places")
	}
	if pl := plan("y.test"); !pl.SubstituteInDefault || !cmp.Equal(pl.SubstituteIn, DefaultSubstituteIn) {
		t.Errorf("unset: places %v default %v, want DefaultSubstituteIn", pl.SubstituteIn, pl.SubstituteInDefault)
	}
	if pl := plan("z.test"); pl.SubstituteIn != nil {
		t.Errorf("no placeholder: places %v, want none", pl.SubstituteIn)
	}
	ws := p.Warnings()
	if len(ws) != 1 || ws[0].Line != 10 || !strings.Contains(ws[0].Msg, `rule "unset" (rules[1]): credential "ph" has a placeholder and the rule sets no substitute_in`) {
		t.Errorf("warnings %v, want one for rule unset at line 10", ws)
	}
}

// TestSubstituteInErrors: every mistake in substitute_in is reported at
// its FILE:LINE:COL with what to write instead.
func TestSubstituteInErrors(t *testing.T) {
	const head = `destinations:
  d: {hosts: [x.test]}
credentials:
  ph: {provider: policytest, value: a, placeholder: CREDGATE_PH_places}
  plain: {provider: policytest, value: a}
rules:
`
	grammar := `header, "header:NAME", basic, path, query, "query:NAME", form, "form:NAME", json, "json:/POINTER" or websocket`
	tests := []struct {
		name, rule, want string
	}{
		{"unknown place", `{credential: ph, as: policytest-inj, substitute_in: [body]}`,
			`p.yaml:7:94: rule "r" (rules[0]): substitute_in "body": unknown place "body"; use ` + grammar},
		{"unknown kind with a name", `{credential: ph, as: policytest-inj, substitute_in: ["cookie:sid"]}`,
			`p.yaml:7:94: rule "r" (rules[0]): substitute_in "cookie:sid": unknown place "cookie"; use ` + grammar},
		{"path takes no name", `{credential: ph, as: policytest-inj, substitute_in: ["path:/bot"]}`,
			`p.yaml:7:94: rule "r" (rules[0]): substitute_in "path:/bot": path takes no name; write path`},
		{"basic takes no name", `{credential: ph, as: policytest-inj, substitute_in: ["basic:user"]}`,
			`p.yaml:7:94: rule "r" (rules[0]): substitute_in "basic:user": basic takes no name; write basic`},
		{"websocket takes no name", `{credential: ph, as: policytest-inj, substitute_in: ["websocket:/d/token"]}`,
			`p.yaml:7:94: rule "r" (rules[0]): substitute_in "websocket:/d/token": websocket takes no name; write websocket`},
		{"empty name", `{credential: ph, as: policytest-inj, substitute_in: ["query:"]}`,
			`p.yaml:7:94: rule "r" (rules[0]): substitute_in "query:": the name after "query:" is empty; write query:NAME, or query for anywhere in it`},
		{"bad header name", `{credential: ph, as: policytest-inj, substitute_in: ["header:X Key"]}`,
			`p.yaml:7:94: rule "r" (rules[0]): substitute_in "header:X Key": "X Key" is not a header name; write header:NAME with the header the API reads, like header:Authorization`},
		{"pointer without slash", `{credential: ph, as: policytest-inj, substitute_in: ["json:auth.key"]}`,
			`p.yaml:7:94: rule "r" (rules[0]): substitute_in "json:auth.key": "auth.key" is not a JSON pointer: a JSON pointer starts with '/'; write json:/FIELD/SUBFIELD, like json:/auth/key`},
		{"pointer bad escape", `{credential: ph, as: policytest-inj, substitute_in: ["json:/a~2"]}`,
			`p.yaml:7:94: rule "r" (rules[0]): substitute_in "json:/a~2": "/a~2" is not a JSON pointer: '~' must be written ~0, and '/' inside a key ~1; write json:/FIELD/SUBFIELD, like json:/auth/key`},
		{"duplicate", `{credential: ph, as: policytest-inj, substitute_in: ["header:Authorization", "header:authorization"]}`,
			`p.yaml:7:118: rule "r" (rules[0]): substitute_in names "header:Authorization" twice; remove one`},
		{"not a string", `{credential: ph, as: policytest-inj, substitute_in: [1]}`,
			`p.yaml:7:94: rule "r" (rules[0]): each substitute_in entry must be a string naming a place (` + grammar + `)`},
		{"not a list", `{credential: ph, as: policytest-inj, substitute_in: path}`,
			`p.yaml:7:93: rule "r" (rules[0]): substitute_in must be a list of places, like [path] or ["header:Authorization"] (` + grammar + `)`},
		{"empty list", `{credential: ph, as: policytest-inj, substitute_in: []}`,
			`p.yaml:7:93: rule "r" (rules[0]): substitute_in is empty, so the placeholder could be replaced nowhere; name the places the API takes the credential (` + grammar + `), or remove the placeholder`},
		{"credential without placeholder", `{credential: plain, as: policytest-inj, substitute_in: [path]}`,
			`p.yaml:7:81: rule "r" (rules[0]): substitute_in is set but credential "plain" declares no placeholder; add placeholder: to the credential or remove substitute_in`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := head + `  - {name: r, from: "*", to: d, inject: ` + tc.rule + "}\ndefault: deny\n"
			_, err := Parse(context.Background(), "p.yaml", []byte(src))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
