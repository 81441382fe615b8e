package policy

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/credgate/credgate/internal/canonical"
	"golang.org/x/text/unicode/norm"
)

// TestDenyCompatibilityEquivalence is the class test for Unicode
// compatibility characters the gateway forwards (internal/canonical
// refuses only those that would add a delimiter or a dot segment): a
// server normalizing paths with NFKC reads 'ａ', 'ⓐ', '𝐚' as 'a', so every
// such rune, put in a path in place of an ASCII letter or digit its NFKC
// form holds, must be denied by a deny rule on that letter or digit, on a
// case-sensitive and on a path_case: insensitive destination. A deny
// whose pattern is the NFKC form must deny the path holding the rune, and
// a deny written with the rune must deny the ASCII path. The reference is
// norm.NFKC over every rune, apart from the matcher.
func TestDenyCompatibilityEquivalence(t *testing.T) {
	deny := map[rune]*Policy{}
	denied := func(c rune) *Policy {
		if deny[c] == nil {
			deny[c] = mustParse(t, fmt.Sprintf(slashPolicy, "deny", "/v1/*"+string(c)+"*", "action: deny"))
		}
		return deny[c]
	}
	runes, cases := 0, 0
	for r := rune(0x80); r <= utf8.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		s := string(r)
		n := norm.NFKC.String(s)
		if !strings.ContainsFunc(n, func(x rune) bool { return x < utf8.RuneSelf }) || canonical.CheckRunes("/v1/x"+s+"y") != nil {
			continue
		}
		runes++
		for _, c := range strings.ToLower(n) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
				continue
			}
			cases++
			for _, host := range []string{"api.test", "fold.test"} {
				if d := denied(c).Decide(request("w", "GET", "https", host, 443, "/v1/"+s)); d.Rule != "deny" || d.Action != Deny {
					t.Errorf("deny /v1/*%c*, GET https://%s/v1/%s (%U, NFKC %q): %s by rule %q, want denied", c, host, s, r, n, d.Action, d.Rule)
				}
			}
		}
		// The whole NFKC form as the pattern, and the rune in the
		// pattern against the ASCII path.
		if g, msg := compileGlob("/v1/x" + n + "y"); msg == "" {
			cases++
			rl := &rule{act: ruleDeny, paths: []glob{g}}
			if !rl.matchesPath(&pathForms{path: "/v1/x" + s + "y"}, &destination{}) {
				t.Errorf("deny %q does not match %q (%U)", g.src, "/v1/x"+s+"y", r)
			}
		}
		if strings.IndexFunc(n, func(x rune) bool { return !('a' <= x && x <= 'z' || 'A' <= x && x <= 'Z' || '0' <= x && x <= '9') }) < 0 {
			g, msg := compileGlob("/v1/x" + s + "y")
			if msg != "" {
				t.Fatalf("compileGlob(%q): %s", "/v1/x"+s+"y", msg)
			}
			cases++
			rl := &rule{act: ruleDeny, paths: []glob{g}}
			if !rl.matchesPath(&pathForms{path: "/v1/x" + n + "y"}, &destination{}) {
				t.Errorf("deny %q does not match %q (%U)", g.src, "/v1/x"+n+"y", r)
			}
		}
	}
	if runes < 1000 {
		t.Fatalf("only %d runes tried: the test checks too little", runes)
	}
	t.Logf("%d runes whose NFKC form holds ASCII, %d cases", runes, cases)
}

// TestCompatibilityAllowNotWidened: allow rules match the path as sent,
// never its NFKC form (only deny rules match that), so a rule allowing
// /v1/repos/acme/* does not allow /v1/repos/ａcme/x, which a server that
// does not normalize routes to another repository; compatibility
// characters under the allowed prefix are allowed, and a deny on *admin*
// denies 'ａdmin', 'ａｄｍｉｎ', 'ⓐdmin' on both kinds of destination.
func TestCompatibilityAllowNotWidened(t *testing.T) {
	allow := mustParse(t, fmt.Sprintf(slashPolicy, "allow", "/v1/repos/acme/*", "inject: {credential: c, as: policytest-inj}"))
	deny := mustParse(t, fmt.Sprintf(slashPolicy, "deny", "/*admin*", "action: deny"))
	for _, host := range []string{"api.test", "fold.test"} {
		for _, tt := range []struct {
			p       *Policy
			path    string
			rule    string
			allowed bool
		}{
			{allow, "/v1/repos/acme/x", "allow", true},
			{allow, "/v1/repos/acme/ｘ（１）", "allow", true},
			{allow, "/v1/repos/acme/議事録（2026）.pdf", "allow", true},
			{allow, "/v1/repos/ａcme/x", "rest", true},
			{allow, "/v1/repos/ａｃｍｅ/x", "rest", true},
			{allow, "/v1/ｒepos/acme/x", "rest", true},
			{deny, "/v1/admin", "deny", false},
			{deny, "/v1/ａdmin", "deny", false},
			{deny, "/v1/ａｄｍｉｎ/x", "deny", false},
			{deny, "/v1/ⓐdmin", "deny", false},
			{deny, "/v1/ＡＤＭＩＮ", "deny", false},
			{deny, "/v1/x/ad㎆in", "rest", true},
			{deny, "/v1/ᵃdmin/", "deny", false},
			{deny, "/v1/adm\u0131n", "deny", false},
			{deny, "/v1/議事録（2026）", "rest", true},
		} {
			d := tt.p.Decide(request("w", "GET", "https", host, 443, tt.path))
			if d.Rule != tt.rule || (d.Action == Inject) != tt.allowed {
				t.Errorf("GET https://%s%s: %s by rule %q, want rule %q (allowed %v)", host, tt.path, d.Action, d.Rule, tt.rule, tt.allowed)
			}
		}
	}
}
