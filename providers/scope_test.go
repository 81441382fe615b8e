package providers_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/providers"
)

// TestScopeUnambiguous: inputs that a separator-joined or truncated
// encoding would confuse give different scopes.
func TestScopeUnambiguous(t *testing.T) {
	long := strings.Repeat("x", 64)
	builds := map[string]func() *providers.Scope{
		"add a|bc":      func() *providers.Scope { return providers.NewScope("k").Add("a", "bc") },
		"add ab|c":      func() *providers.Scope { return providers.NewScope("k").Add("ab", "c") },
		"add a|b, c|d":  func() *providers.Scope { return providers.NewScope("k").Add("a", "b").Add("c", "d") },
		"add a|b\\0c|d": func() *providers.Scope { return providers.NewScope("k").Add("a", "b\x00c\x00d") },
		"list [a b]":    func() *providers.Scope { return providers.NewScope("k").AddList("l", []string{"a b"}) },
		"list [a,b]":    func() *providers.Scope { return providers.NewScope("k").AddList("l", []string{"a", "b"}) },
		"list [a,'']":   func() *providers.Scope { return providers.NewScope("k").AddList("l", []string{"a", ""}) },
		"list [a]":      func() *providers.Scope { return providers.NewScope("k").AddList("l", []string{"a"}) },
		"list []":       func() *providers.Scope { return providers.NewScope("k").AddList("l", nil) },
		"add l|a":       func() *providers.Scope { return providers.NewScope("k").Add("l", "a") },
		"kind k2":       func() *providers.Scope { return providers.NewScope("k2") },
		"kind k":        func() *providers.Scope { return providers.NewScope("k") },
		"long 1":        func() *providers.Scope { return providers.NewScope("k").Add("n", long+"1") },
		"long 2":        func() *providers.Scope { return providers.NewScope("k").Add("n", long+"2") },
	}
	seen := map[string]string{}
	for name, b := range builds {
		s := b().String()
		if s != b().String() {
			t.Errorf("%s: not deterministic", name)
		}
		if prev, dup := seen[s]; dup {
			t.Errorf("%s and %s share scope %s", prev, name, s)
		}
		seen[s] = name
	}
}

// TestScopeTemplate: a rendered template and a failed one are told apart
// by the full attribute values, and no value appears in the scope.
func TestScopeTemplate(t *testing.T) {
	tmpl, err := identity.ParseTemplate("x/{{.workload.team}}")
	if err != nil {
		t.Fatal(err)
	}
	w := func(team string) identity.Workload {
		return identity.Workload{Name: "w", Factors: []identity.Factor{{Kind: "jwt", Attributes: map[string]string{"team": team}}}}
	}
	refuseSlash := func(v string) error {
		if strings.Contains(v, "/") {
			return identity.ErrNoAttribute
		}
		return nil
	}
	seen := map[string]string{}
	for _, team := range []string{"payments", "payments-eu", "a/b", "a/c", "secret-team-value"} {
		s := providers.NewScope("k").AddTemplate("path", tmpl, w(team), refuseSlash).String()
		if prev, dup := seen[s]; dup {
			t.Errorf("teams %q and %q share scope %s", prev, team, s)
		}
		seen[s] = team
		if strings.Contains(s, team) {
			t.Errorf("scope %s shows the value %q", s, team)
		}
	}
	none := providers.NewScope("k").AddTemplate("path", tmpl, identity.Workload{Name: "w"}, nil).String()
	if _, dup := seen[none]; dup {
		t.Errorf("a workload without the attribute shares a scope: %s", none)
	}
}

// TestScopeAddToken: AddToken keys by the token's digest exactly as the
// providers did by hand (their cache scopes are unchanged), never by the
// token, and keeps apart callers whose tokens fail differently.
func TestScopeAddToken(t *testing.T) {
	d := sha256.Sum256([]byte("tok"))
	byHand := providers.NewScope("k").Add("t_sha256", hex.EncodeToString(d[:])).Add("t!", "no token").String()
	if got := providers.NewScope("k").AddToken("t", "tok", errors.New("no token")).String(); got != byHand {
		t.Errorf("AddToken = %s, want %s", got, byHand)
	}
	plain := providers.NewScope("k").Add("t_sha256", hex.EncodeToString(d[:])).String()
	if got := providers.NewScope("k").AddToken("t", "tok", nil).String(); got != plain {
		t.Errorf("AddToken without error = %s, want %s", got, plain)
	}
	a := providers.NewScope("k").AddToken("t", "", errors.New("no jwt factor")).String()
	b := providers.NewScope("k").AddToken("t", "", errors.New("no kubernetes factor")).String()
	if a == b {
		t.Error("tokens failing differently share a scope")
	}
}
