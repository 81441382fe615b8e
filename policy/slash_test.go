package policy

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// slashPatterns are rule paths of every shape: exact with and without a
// trailing '/', "prefix*", "prefix/*", stars in the middle and at both
// ends, and the root.
var slashPatterns = []string{
	"/v1/admin", "/v1/admin/", "/v1/admin*", "/v1/admin/*",
	"/v1/*/admin", "/v1/*/admin/", "/v1/*/admin*", "/v1/*/admin/*",
	"/v1/*dmin", "/v1/*dmin/", "/*/admin/*/keys", "/*/admin/*/keys/",
	"/v1/a*n/*", "/*", "/", "/*/", "/v1/*/*", "/V1/Admin/",
}

// slashPaths returns request paths around the patterns: each pattern
// with its stars replaced by "", "x" and "x/y", in upper case, with a
// trailing '/' added and removed, and a few unrelated paths.
func slashPaths() []string {
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if p != "" && p[0] == '/' && !strings.Contains(p, "//") && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, pat := range slashPatterns {
		for _, fill := range []string{"", "x", "x/y", "admin", "admin/"} {
			p := strings.ReplaceAll(pat, "*", fill)
			for _, q := range []string{p, strings.ToUpper(p)} {
				add(q)
				add(q + "/")
				if len(q) > 1 {
					add(strings.TrimSuffix(q, "/"))
				}
			}
		}
	}
	for _, p := range []string{"/", "/v1", "/v1/", "/v1/adminx", "/v1/admi", "/v1/x/admi/", "/v2/admin", "/v1/admin/keys"} {
		add(p)
		add(p + "/")
	}
	return out
}

// globRegexp is the reference meaning of a rule path: '*' matches any run
// of characters, everything else itself.
func globRegexp(pattern string, fold bool) *regexp.Regexp {
	parts := strings.Split(pattern, "*")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	flags := ""
	if fold {
		flags = "(?i)"
	}
	return regexp.MustCompile(flags + "^" + strings.Join(parts, ".*") + "$")
}

// slashForms returns p and p with one trailing '/' added or removed: the
// spellings a server that ignores a trailing slash routes alike.
func slashForms(p string) []string {
	switch {
	case p == "/":
		return []string{p}
	case strings.HasSuffix(p, "/"):
		return []string{p, p[:len(p)-1]}
	default:
		return []string{p, p + "/"}
	}
}

// TestDenySlashEquivalence: for deny rules of every pattern shape, a
// request path and the same path with one trailing '/' added or removed
// are one path (denied when any form matches, case-insensitively), so
// adding or removing the slash never escapes a deny; allow rules match
// the path as sent (case-sensitively, or folded for a path_case:
// insensitive destination) and nothing else. The reference is a regular
// expression per pattern applied to each spelling, apart from the
// matcher under test.
func TestDenySlashEquivalence(t *testing.T) {
	paths := slashPaths()
	for _, pat := range slashPatterns {
		t.Run(pat, func(t *testing.T) {
			// A deny rule with the pattern, then a rule that would
			// inject into everything else: a path escaping the deny
			// falls through to the inject.
			deny := mustParse(t, fmt.Sprintf(slashPolicy, "deny", pat, "action: deny"))
			// The pattern as an allow rule, with nothing after it.
			allow := mustParse(t, fmt.Sprintf(slashPolicy, "allow", pat, "inject: {credential: c, as: policytest-inj}"))
			folded, exact := globRegexp(pat, true), globRegexp(pat, false)
			for _, p := range paths {
				wantDeny := false
				for _, f := range slashForms(p) {
					wantDeny = wantDeny || folded.MatchString(f)
				}
				for _, host := range []string{"api.test", "fold.test"} {
					d := deny.Decide(request("w", "GET", "https", host, 443, p))
					if gotDeny := d.Rule == "deny" && d.Action == Deny; gotDeny != wantDeny {
						t.Errorf("deny %q, GET https://%s%s: %s by rule %q (%s), want denied by it: %v", pat, host, p, d.Action, d.Rule, d.Code, wantDeny)
					}
				}
				for host, want := range map[string]bool{"api.test": exact.MatchString(p), "fold.test": folded.MatchString(p)} {
					d := allow.Decide(request("w", "GET", "https", host, 443, p))
					if got := d.Rule == "allow" && d.Action == Inject; got != want {
						t.Errorf("allow %q, GET https://%s%s: %s by rule %q (%s), want inject: %v", pat, host, p, d.Action, d.Rule, d.Code, want)
					}
				}
			}
		})
	}
}

// slashPolicy is a policy for a case-sensitive and a path_case:
// insensitive host, with a rule (name, path, action) to both; the
// "rest" rule after it injects into whatever a deny rule lets through.
const slashPolicy = `
workloads:
  w: {cidrs: [10.0.0.0/8]}
destinations:
  api: {hosts: [api.test]}
  fold: {hosts: [fold.test], path_case: insensitive}
credentials:
  c: {provider: policytest, value: x}
rules:
  - {name: %s, from: w, to: [api, fold], paths: [%q], %s}
  - {name: rest, from: w, to: [api, fold], paths: ["/*"], inject: {credential: c, as: policytest-inj}}
default: deny
`

// FuzzGlobSlashAdded: matchFoldedSlashAdded(p) is matchFolded(p+"/")
// for every valid pattern and lower-case absolute path (a request path
// starts with '/'), without building p+"/".
func FuzzGlobSlashAdded(f *testing.F) {
	for _, pat := range slashPatterns {
		for _, p := range []string{"/v1/admin", "/v1/x/admin", "/", "/v1", "/x/admin/y/keys", "/v1/an"} {
			f.Add(pat, p)
		}
	}
	f.Fuzz(func(t *testing.T, pattern, path string) {
		g, msg := compileGlob(pattern)
		if msg != "" || !strings.HasPrefix(path, "/") {
			return
		}
		lp := strings.ToLower(path)
		if got, want := g.matchFoldedSlashAdded(lp), g.matchFolded(lp+"/"); got != want {
			t.Errorf("glob %q: matchFoldedSlashAdded(%q) = %v, matchFolded(%q) = %v", pattern, lp, got, lp+"/", want)
		}
	})
}

// TestDenyCaseEquivalence is the class test for case folding beyond
// ASCII: a server that routes case-insensitively may take a character
// for another whose upper or lower case is the same (Java's
// equalsIgnoreCase compares both; Python's upper() and .NET's invariant
// upper case map dotless 'ı' to 'I' and long 'ſ' to 'S'), so every
// non-ASCII rune that equals an ASCII letter that way, put in place of
// that letter in a denied path, must be denied too (and matched by an
// allow rule of a path_case: insensitive destination). The reference is
// unicode.ToUpper and ToLower over every rune, apart from the matcher.
func TestDenyCaseEquivalence(t *testing.T) {
	equal := map[byte][]rune{}
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		for c := byte('a'); c <= 'z'; c++ {
			if unicode.ToUpper(r) == unicode.ToUpper(rune(c)) || unicode.ToLower(r) == rune(c) {
				equal[c] = append(equal[c], r)
			}
		}
	}
	if len(equal) == 0 {
		t.Fatal("no rune equals an ASCII letter: the test checks nothing")
	}
	deny := mustParse(t, fmt.Sprintf(slashPolicy, "deny", "/v1/*admin*", "action: deny"))
	allow := mustParse(t, fmt.Sprintf(slashPolicy, "allow", "/v1/s*/pr*vate/kelvin*", "inject: {credential: c, as: policytest-inj}"))
	cases := 0
	for _, base := range []string{"/v1/admin", "/v1/x/ADMIN/keys", "/v1/skeys/private/kelvin"} {
		for i := 0; i < len(base); i++ {
			c := base[i] | 0x20
			for _, r := range equal[c] {
				p := base[:i] + string(r) + base[i+1:]
				cases++
				for _, host := range []string{"api.test", "fold.test"} {
					if d := deny.Decide(request("w", "GET", "https", host, 443, p)); strings.Contains(strings.ToLower(base), "admin") && !(d.Rule == "deny" && d.Action == Deny) {
						t.Errorf("deny /v1/*admin*, GET https://%s%s (%U for %q): %s by rule %q, want denied", host, p, r, c, d.Action, d.Rule)
					}
				}
				if d := allow.Decide(request("w", "GET", "https", "fold.test", 443, p)); strings.HasPrefix(base, "/v1/skeys") && !(d.Rule == "allow" && d.Action == Inject) {
					t.Errorf("path_case: insensitive allow, GET https://fold.test%s (%U for %q): %s by rule %q, want it allowed", p, r, c, d.Action, d.Rule)
				}
			}
		}
	}
	t.Logf("%d ASCII letters have non-ASCII equals; %d paths", len(equal), cases)
}

// TestDenyMethodEquivalence: servers run a GET handler for HEAD (Go's
// ServeMux "GET /x" patterns, Express, Rails, Flask, Django, Spring: RFC
// 9110 §9.3.2 makes HEAD a GET without content), with its side effects
// and its response's fields, so a deny rule naming GET denies HEAD too,
// whatever the other rules say; naming HEAD does not deny GET, and allow
// rules match the methods they name and nothing else.
func TestDenyMethodEquivalence(t *testing.T) {
	for _, tc := range []struct {
		methods string
		method  string
		denied  bool
	}{
		{"[GET]", "GET", true},
		{"[GET]", "HEAD", true},
		{"[GET, POST]", "HEAD", true},
		{"[get]", "HEAD", true},
		{"[POST]", "HEAD", false},
		{"[HEAD]", "HEAD", true},
		{"[HEAD]", "GET", false},
		{"[DELETE]", "HEAD", false},
	} {
		p := mustParse(t, fmt.Sprintf(slashPolicy, "deny", "/v1/secret*", "methods: "+tc.methods+", action: deny"))
		for _, host := range []string{"api.test", "fold.test"} {
			d := p.Decide(request("w", tc.method, "https", host, 443, "/v1/secret/x"))
			if got := d.Rule == "deny" && d.Action == Deny; got != tc.denied {
				t.Errorf("deny methods %s, %s https://%s/v1/secret/x: %s by rule %q (%s), want denied by it: %v", tc.methods, tc.method, host, d.Action, d.Rule, d.Code, tc.denied)
			}
		}
		allow := mustParse(t, fmt.Sprintf(slashPolicy, "allow", "/v1/secret*", "methods: "+tc.methods+", inject: {credential: c, as: policytest-inj}"))
		named := false
		for _, m := range strings.Split(strings.Trim(tc.methods, "[]"), ",") {
			named = named || strings.EqualFold(strings.TrimSpace(m), tc.method)
		}
		d := allow.Decide(request("w", tc.method, "https", "api.test", 443, "/v1/secret/x"))
		if got := d.Rule == "allow"; got != named {
			t.Errorf("allow methods %s, %s: matched %v, want %v (allow rules match the methods they name only)", tc.methods, tc.method, got, named)
		}
	}
}
