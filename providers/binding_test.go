package providers

import (
	"context"
	"testing"

	"github.com/credgate/credgate/identity"
)

type scopedReissuer struct{ reissue bool }

func (scopedReissuer) Fetch(_ context.Context, req Request) (*Credential, error) {
	return &Credential{Fields: map[string]Secret{FieldToken: NewSecret("for-" + req.Workload.Name)}}, nil
}
func (scopedReissuer) CacheScope(req Request) string { return "wl=" + req.Workload.Name }
func (s scopedReissuer) ReissueOnUnauthorized() bool { return s.reissue }

type plain struct{}

func (plain) Fetch(context.Context, Request) (*Credential, error) { return &Credential{}, nil }

// TestBind: the binding carries the caller's scope, fetches for that
// caller and says whether a 401 drops the credential — everything the
// gateway used to probe the provider for.
func TestBind(t *testing.T) {
	key := CacheKey{Credential: "c", Version: "v", Provider: "p"}
	b := Bind(scopedReissuer{reissue: true}, key, identity.Workload{Name: "billing"})
	if b.Key != (CacheKey{Credential: "c", Version: "v", Provider: "p", Scope: "wl=billing"}) || !b.Reissue {
		t.Errorf("Bind = %+v", b)
	}
	cred, err := b.Fetch(context.Background())
	if s, _ := cred.Field(FieldToken); err != nil || s.Reveal() != "for-billing" {
		t.Errorf("Fetch = %v, %v", s.Reveal(), err)
	}
	if b := Bind(scopedReissuer{}, key, identity.Workload{Name: "x"}); b.Reissue {
		t.Error("Reissue set for a provider that declines it")
	}
	if b := Bind(plain{}, key, identity.Workload{Name: "x"}); b.Key != key || b.Reissue {
		t.Errorf("Bind(plain) = %+v, want the key unscoped and no reissue", b)
	}
}

// TestComposedScope: a credential's scope covers the scopes of the
// credentials it reads, recursively; with no per-caller input it is the
// provider's own scope, unchanged (the keys already in a shared cache
// stay valid).
func TestComposedScope(t *testing.T) {
	req := func(w string) Request { return Request{Credential: "c", Workload: identity.Workload{Name: w}} }
	perWL := Input{Name: "per-wl", Provider: scopedReissuer{}}
	fixed := Input{Name: "fixed", Provider: plain{}}
	tests := []struct {
		name   string
		p      Provider
		inputs []Input
		shared bool
		same   string // when set, the scope of workload "a" is exactly this
	}{
		{"plain-no-inputs", plain{}, nil, true, ""},
		{"scoped-no-inputs", scopedReissuer{}, nil, false, "wl=a"},
		{"plain-fixed-input", plain{}, []Input{fixed}, true, ""},
		{"scoped-fixed-input", scopedReissuer{}, []Input{fixed}, false, "wl=a"},
		{"plain-scoped-input", plain{}, []Input{perWL}, false, ""},
		{"plain-nested-scoped-input", plain{}, []Input{{Name: "mid", Provider: plain{}, Inputs: []Input{fixed, perWL}}}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := ComposedScope(tt.p, tt.inputs, req("a")), ComposedScope(tt.p, tt.inputs, req("b"))
			if (a == b) != tt.shared {
				t.Errorf("scopes of a and b: %q and %q; shared %v, want %v", a, b, a == b, tt.shared)
			}
			if tt.same != "" && a != tt.same {
				t.Errorf("scope %q, want the provider's own %q", a, tt.same)
			}
			if again := ComposedScope(tt.p, tt.inputs, req("a")); again != a {
				t.Errorf("scope not stable: %q then %q", a, again)
			}
		})
	}
	// Moving the per-caller input to another name changes the scope.
	x := ComposedScope(plain{}, []Input{perWL}, req("a"))
	y := ComposedScope(plain{}, []Input{{Name: "other", Provider: scopedReissuer{}}}, req("a"))
	if x == y {
		t.Errorf("inputs of different names share scope %q", x)
	}
}
