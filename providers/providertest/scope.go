// Package providertest holds checks that every credential provider should
// pass, for the tests of providers in this repository and elsewhere.
package providertest

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/providers"
)

// ScopeCheck describes a provider for CheckScopes.
type ScopeCheck struct {
	// Fields are the provider's caller-dependent settings, by name as in
	// the YAML (a list item or a map entry as "alt_names[0]" or
	// "session_tags.team"): the settings whose value is rendered from a
	// workload attribute.
	Fields []string
	// Fixed are the provider's other top-level settings (YAML keys): the
	// same for every caller, so part of the cache key's Version instead.
	// Every YAML key of the provider must be in Fields (by the part before
	// '[' or '.') or in Fixed, so that a new setting cannot be added
	// without deciding which it is.
	Fixed []string
	// New returns a provisioned provider in which each setting of Fields
	// takes its value from the workload attribute attrs[field] (for
	// example common_name: "{{.workload.a0}}.example.com", or
	// session_tags: {team: a0}) and every other setting is fixed.
	New func(t *testing.T, attrs map[string]string) providers.Provider
}

// ValuePairs are pairs of attribute values that differ in exactly one
// way: after the 64th character (where STS session names are cut), only
// in characters a sanitiser replaces or a validator refuses, in case, by
// a suffix, or both refused by a validator.
var ValuePairs = [][2]string{
	{"alpha", "bravo"},
	{strings.Repeat("a", 64) + "1", strings.Repeat("a", 64) + "2"},
	{strings.Repeat("b", 300) + "1", strings.Repeat("b", 300) + "2"},
	{"ns/a", "ns-a"},
	{"ns:a", "ns-a"},
	{"ns a", "ns-a"},
	{"nsé", "ns-"},
	{"ns..a", "ns.a"},
	{"a.b", "a_b"},
	{"Team", "team"},
	{"x", "xx"},
	{"x", "x "},
	// Both refused by a path validator: the errors must not be shared
	// either (a cached error can name the other caller's value).
	{"ns/a", "ns/b"},
	{"..a", "..b"},
}

// CheckScopes checks the class "a credential's cache scope includes every
// input that shapes it, in full": for each field of c and each pair of
// ValuePairs, two workloads that differ only in the attribute that field
// renders get different scopes, and the same workload gets the same scope
// twice.
func CheckScopes(t *testing.T, c ScopeCheck) {
	t.Helper()
	attrs := map[string]string{}
	for i, f := range c.Fields {
		attrs[f] = "a" + string(rune('0'+i%10)) + strings.Repeat("x", i/10)
	}
	p := c.New(t, attrs)
	sc, ok := p.(providers.Scoped)
	if !ok {
		t.Fatalf("%T has caller-dependent settings %v but is not providers.Scoped", p, c.Fields)
	}
	checkClassified(t, p, c)
	base := func() map[string]string {
		m := map[string]string{}
		for i, f := range c.Fields {
			m[attrs[f]] = "base-value-" + string(rune('0'+i%10))
		}
		return m
	}
	workload := func(values map[string]string) identity.Workload {
		return identity.Workload{Name: "billing", Factors: []identity.Factor{{Kind: identity.KindJWT, Subject: "sub", Attributes: values}}}
	}
	scope := func(values map[string]string) string {
		return sc.CacheScope(providers.Request{Credential: "c", Workload: workload(values)})
	}
	if a, b := scope(base()), scope(base()); a != b {
		t.Errorf("the same workload got two scopes: %q and %q", a, b)
	}
	for _, f := range c.Fields {
		for _, pair := range ValuePairs {
			va, vb := base(), base()
			va[attrs[f]], vb[attrs[f]] = pair[0], pair[1]
			if a, b := scope(va), scope(vb); a == b {
				t.Errorf("%s = %q and %q: both callers got scope %q; they must not share a credential", f, pair[0], pair[1], a)
			}
			if a, b := scope(va), scope(va); a != b {
				t.Errorf("%s = %q: the same workload got two scopes", f, pair[0])
			}
			// The attribute carried by another kind of factor (an X.509
			// SVID's, a Kubernetes token's) instead of the JWT.
			for _, kind := range []string{identity.KindMTLS, identity.KindKubernetes} {
				other := func(values map[string]string) string {
					w := identity.Workload{Name: "billing", Factors: []identity.Factor{{Kind: kind, Subject: "sub", Attributes: values}}}
					return sc.CacheScope(providers.Request{Credential: "c", Workload: w})
				}
				if a, b := other(va), other(vb); a == b {
					t.Errorf("%s = %q and %q from a %s factor: both callers got scope %q; they must not share a credential", f, pair[0], pair[1], kind, a)
				}
			}
		}
	}
	// Each field rendered from the workload's name ({{.workload.name}}):
	// two workloads whose names differ as the pairs do.
	for _, f := range c.Fields {
		byName := maps.Clone(attrs)
		byName[f] = "name"
		pn, ok := c.New(t, byName).(providers.Scoped)
		if !ok {
			t.Fatalf("%s rendered from the workload name: the provider is not providers.Scoped", f)
		}
		named := func(name string) string {
			w := workload(base())
			w.Name = name
			return pn.CacheScope(providers.Request{Credential: "c", Workload: w})
		}
		for _, pair := range ValuePairs {
			if a, b := named(pair[0]), named(pair[1]); a == b {
				t.Errorf("%s rendered from the workload name, workloads %q and %q: both got scope %q; they must not share a credential", f, pair[0], pair[1], a)
			}
		}
	}
}

// checkClassified fails when a YAML key of p is in neither c.Fields nor
// c.Fixed.
func checkClassified(t *testing.T, p providers.Provider, c ScopeCheck) {
	t.Helper()
	v := reflect.ValueOf(p)
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return
	}
	var fields []string
	for _, f := range c.Fields {
		fields = append(fields, strings.FieldsFunc(f, func(r rune) bool { return r == '[' || r == '.' })[0])
	}
	for i := 0; i < v.NumField(); i++ {
		sf := v.Type().Field(i)
		if !sf.IsExported() {
			continue
		}
		key, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if key == "" || key == "-" {
			continue
		}
		if !slices.Contains(fields, key) && !slices.Contains(c.Fixed, key) {
			t.Errorf("setting %s of %T is in neither ScopeCheck.Fields (rendered per caller: then its full rendered value must be in CacheScope) nor ScopeCheck.Fixed", key, p)
		}
	}
}

// Load builds the provider registered as name from YAML settings, as a
// policy would (decode, Provision, Validate), and cleans it up when the
// test ends. The provider's package must be imported.
func Load(t *testing.T, name, settings string) providers.Provider {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(settings), &doc); err != nil {
		t.Fatalf("settings of %s: %v", name, err)
	}
	var node *yaml.Node
	if len(doc.Content) > 0 {
		node = doc.Content[0]
	}
	p, err := providers.Load(context.Background(), name, node)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	if c, ok := p.(providers.CleanerUpper); ok {
		t.Cleanup(func() { _ = c.Cleanup() })
	}
	return p
}
