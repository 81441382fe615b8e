package identity_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/identity"
)

// fakeVerifier is a verifier of kind "fake" that presents a factor when
// the Proxy-Authorization value is "good" and fails on "bad".
type fakeVerifier struct{}

func (fakeVerifier) Kind() string { return "fake" }

func (fakeVerifier) Verify(_ context.Context, ev identity.Evidence) (*identity.Factor, error) {
	switch ev.ProxyAuthorization {
	case "":
		return nil, nil
	case "good":
		return &identity.Factor{Kind: "fake", Subject: "svc", Attributes: map[string]string{"team": "billing"}}, nil
	default:
		return nil, fmt.Errorf("token rejected: %w", identity.ErrInvalid)
	}
}

func TestResolve(t *testing.T) {
	specs := []identity.Spec{
		{Name: "strong", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Require: []string{"fake"}},
		{Name: "office", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
		{Name: "anywhere-with-token", Require: []string{"fake"}},
		{Name: "no-selector"},
	}
	tests := []struct {
		name        string
		ev          identity.Evidence
		wantName    string
		wantFactors []string
		wantErr     bool
	}{
		{"source only in office", identity.Evidence{Source: netip.MustParseAddrPort("10.1.2.3:5555")}, "office", []string{"source"}, false},
		{"source and token", identity.Evidence{Source: netip.MustParseAddrPort("10.1.2.3:5555"), ProxyAuthorization: "good"}, "strong", []string{"source", "fake"}, false},
		{"token outside cidrs", identity.Evidence{Source: netip.MustParseAddrPort("192.0.2.1:1"), ProxyAuthorization: "good"}, "anywhere-with-token", []string{"source", "fake"}, false},
		{"nothing matches is anonymous", identity.Evidence{Source: netip.MustParseAddrPort("192.0.2.1:1")}, "", []string{"source"}, false},
		{"ipv4-mapped source is unmapped", identity.Evidence{Source: netip.MustParseAddrPort("[::ffff:10.1.0.9]:1")}, "office", []string{"source"}, false},
		{"a presented factor that fails refuses the connection", identity.Evidence{Source: netip.MustParseAddrPort("10.1.2.3:5555"), ProxyAuthorization: "forged"}, "", []string{"source"}, true},
	}
	r := identity.NewResolver(fakeVerifier{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := r.Resolve(context.Background(), tt.ev, specs)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Resolve error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, identity.ErrInvalid) {
					t.Errorf("error %v does not wrap ErrInvalid", err)
				}
				return
			}
			if w.Name != tt.wantName {
				t.Errorf("Name = %q, want %q", w.Name, tt.wantName)
			}
			if diff := cmp.Diff(tt.wantFactors, w.FactorKinds()); diff != "" {
				t.Errorf("factors (-want +got):\n%s", diff)
			}
			if w.Anonymous() != (tt.wantName == "") {
				t.Errorf("Anonymous() = %v", w.Anonymous())
			}
		})
	}
}

func TestDisplayName(t *testing.T) {
	if got := (identity.Workload{}).DisplayName(); got != "anonymous" {
		t.Errorf("DisplayName of anonymous = %q", got)
	}
	if got := (identity.Workload{Name: "api"}).DisplayName(); got != "api" {
		t.Errorf("DisplayName = %q", got)
	}
}

func TestRegistry(t *testing.T) {
	r := identity.NewRegistry()
	m := identity.Module{Name: "fake", New: func() identity.Verifier { return fakeVerifier{} }}
	r.Register(m)
	if _, ok := r.Lookup("fake"); !ok {
		t.Fatal("registered module not found")
	}
	if diff := cmp.Diff([]string{"fake", "jwt", "kubernetes", "mtls", "source"}, r.Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	for _, bad := range []identity.Module{m, {Name: "", New: m.New}, {Name: "x"}, {Name: "mtls", New: m.New}, {Name: "source", New: m.New}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", bad.Name)
				}
			}()
			r.Register(bad)
		}()
	}
}
