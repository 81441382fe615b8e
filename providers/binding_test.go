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
