package policy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const responseHead = `workloads:
  w: {cidrs: [10.0.0.0/8]}
destinations:
  d: {hosts: [api.example.com]}
credentials:
  c: {provider: policytest, value: x}
rules:
`

func TestScrubAndCustodySettings(t *testing.T) {
	p, err := Parse(context.Background(), "p.yaml", []byte(responseHead+`  - name: login
    from: w
    to: d
    paths: [/login]
    inject: {credential: c, as: policytest-inj}
    scrub: {encoded: identity}
    custody: {json: [$.session.token, access_token], cookies: [sid], ttl: 15m, headers: [x-session]}
  - name: raw
    from: w
    to: d
    paths: [/raw]
    inject: {credential: c, as: policytest-inj}
    scrub: {enabled: false}
  - name: plain
    from: w
    to: d
    inject: {credential: c, as: policytest-inj}
default: deny
`))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	decide := func(path string) Decision {
		return p.Decide(Query{Workload: wl("w"), Scheme: "https", Host: "api.example.com", Port: 443, Method: "GET", Path: path})
	}
	login := decide("/login")
	if login.Scrub != (Scrub{Encoded: EncodedIdentity}) || login.Custody == nil {
		t.Fatalf("login: scrub %+v, custody %v", login.Scrub, login.Custody)
	}
	want := &Custody{JSON: [][]string{{"session", "token"}, {"access_token"}}, Cookies: []string{"sid"}, TTL: 15 * time.Minute, Headers: []string{"X-Session"}}
	if diff := cmp.Diff(want, login.Custody); diff != "" {
		t.Errorf("custody (-want +got):\n%s", diff)
	}
	// Custody placeholders go back in Authorization, Cookie and the
	// custody block's headers, for every request to its destination.
	for _, path := range []string{"/login", "/raw", "/other"} {
		d := decide(path)
		for name, want := range map[string]bool{"authorization": true, "Cookie": true, "x-session": true, "Referer": false, "X-Api-Key": false} {
			if got := d.CustodyHeader(name); got != want {
				t.Errorf("%s: CustodyHeader(%q) = %v, want %v", path, name, got, want)
			}
		}
	}
	if d := decide("/raw"); !d.Scrub.Off || d.Custody != nil {
		t.Errorf("raw: scrub %+v, custody %v; want off, none", d.Scrub, d.Custody)
	}
	if d := decide("/other"); d.Scrub != (Scrub{Encoded: EncodedDecode}) || d.Custody != nil {
		t.Errorf("default: scrub %+v; want on, decode", d.Scrub)
	}
}

func TestScrubAndCustodyErrors(t *testing.T) {
	_, err := Parse(context.Background(), "p.yaml", []byte(responseHead+`  - name: a
    from: w
    to: d
    action: tunnel
    scrub: {enabled: false}
    custody: {cookies: [sid]}
  - name: b
    from: w
    to: d
    inject: {credential: c, as: policytest-inj}
    scrub: {enabled: maybe, encoded: zstd, level: 3}
    custody: {json: ["$.a[0]", "$"], cookies: ["s id"], ttl: 90d}
  - name: c
    from: w
    to: d
    inject: {credential: c, as: policytest-inj}
    scrub: off
    custody: {ttl: 1h}
  - name: d
    from: w
    to: d
    inject: {credential: c, as: policytest-inj}
    custody: {cookies: [sid], headers: ["X Bad", Connection, x-credgate-workload]}
default: deny
`))
	if err == nil {
		t.Fatal("Parse succeeded, want errors")
	}
	want := []string{
		`p.yaml:12:5: rule "a" (rules[0]) scrub: scrub applies only to inject rules (a rule without a credential injects nothing to scrub); remove it`,
		`p.yaml:13:5: rule "a" (rules[0]) custody: custody applies only to inject rules (the gateway logs in with a credential the client never holds, and keeps the session too); remove it or make the rule inject`,
		`p.yaml:18:22: rule "b" (rules[1]) scrub enabled must be true or false`,
		`p.yaml:18:38: rule "b" (rules[1]) scrub: encoded "zstd" is not one of decode, identity, refuse`,
		`p.yaml:18:44: unknown field "level" in rule "b" (rules[1]) scrub; known fields are enabled, encoded`,
		`p.yaml:19:22: rule "b" (rules[1]) custody json: "$.a[0]" is not a dotted list of object keys (no [index], wildcard or quotes); arrays on the way are searched element by element`,
		`p.yaml:19:32: rule "b" (rules[1]) custody json: "$" names no field; write the keys from the top, like $.session.token`,
		`p.yaml:19:48: rule "b" (rules[1]) custody cookies: "s id" is not a cookie name (a token: letters, digits and !#$%&'*+-.^_` + "`" + `|~)`,
		`p.yaml:19:62: rule "b" (rules[1]) custody: ttl "90d" must be a duration from 1s to 720h, like 15m or 12h`,
		`p.yaml:24:12: rule "c" (rules[2]) scrub must be a mapping like {enabled: true, encoded: decode}`,
		`p.yaml:25:5: rule "c" (rules[2]) custody names nothing to keep; add json: [<path>] and/or cookies: [<name>]`,
		`p.yaml:30:41: rule "d" (rules[3]) custody headers: "X Bad" is not a header name`,
		`p.yaml:30:50: rule "d" (rules[3]) custody headers: Connection is reserved for the proxy (framing, hop-by-hop or gateway-scoped); a session never goes there`,
		`p.yaml:30:62: rule "d" (rules[3]) custody headers: X-Credgate-Workload is reserved for the proxy (framing, hop-by-hop or gateway-scoped); a session never goes there`,
	}
	if diff := cmp.Diff(want, strings.Split(err.Error(), "\n")); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}
