package identity_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/credgate/credgate/identity"
)

// attrFactors are the factors idtest-misbehave returns, by its `do`
// setting.
var attrFactors = map[string]identity.Factor{}

// TestVerifierFactorBounded is the class test of "what a verifier's
// factor says flows into policy conditions, audit lines, logs and spans":
// a factor whose subject or attribute keys or values exceed the
// documented limits, or hold invalid UTF-8 or control characters (C0,
// DEL, C1, bidirectional overrides), is refused with ErrInvalid naming
// the plugin and the attribute, never the value; one within the limits,
// in any script, is accepted as given.
func TestVerifierFactorBounded(t *testing.T) {
	big := func(n int) string { return strings.Repeat("a", n) }
	many := map[string]string{}
	for i := range identity.MaxFactorAttributes + 1 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	atMost := map[string]string{}
	for i := range identity.MaxFactorAttributes {
		atMost[fmt.Sprintf("k%d", i)] = "v"
	}
	secret := pluginSecret
	for _, tc := range []struct {
		name    string
		f       identity.Factor
		wantErr string // "" = accepted
	}{
		{"plain", identity.Factor{Subject: "builder", Attributes: map[string]string{"team": "payments", "region": "Zürich ☃ 東京"}}, ""},
		{"value at the limit", identity.Factor{Subject: "builder", Attributes: map[string]string{"v": big(identity.MaxFactorValueBytes)}}, ""},
		{"key at the limit", identity.Factor{Subject: "builder", Attributes: map[string]string{big(identity.MaxFactorKeyBytes): "x"}}, ""},
		{"subject at the limit", identity.Factor{Subject: big(identity.MaxFactorValueBytes)}, ""},
		{"as many attributes as allowed", identity.Factor{Subject: "builder", Attributes: atMost}, ""},
		{"value one byte over", identity.Factor{Subject: "builder", Attributes: map[string]string{"v": big(identity.MaxFactorValueBytes + 1)}}, `attribute "v": its value has 2049 bytes`},
		{"value of 1 MB", identity.Factor{Subject: "builder", Attributes: map[string]string{"blob": secret + big(1<<20)}}, `attribute "blob": its value has`},
		{"key over the limit", identity.Factor{Subject: "builder", Attributes: map[string]string{big(identity.MaxFactorKeyBytes + 1): "x"}}, "its key has 129 bytes"},
		{"empty key", identity.Factor{Subject: "builder", Attributes: map[string]string{"": "x"}}, "an empty attribute key"},
		{"too many attributes", identity.Factor{Subject: "builder", Attributes: many}, "carries 65 attributes"},
		{"newline in a value", identity.Factor{Subject: "builder", Attributes: map[string]string{"team": secret + "\nlevel=ERROR forged"}}, `attribute "team": its value holds a control character`},
		{"NUL in a value", identity.Factor{Subject: "builder", Attributes: map[string]string{"team": secret + "\x00"}}, `attribute "team": its value holds a control character`},
		{"tab in a value", identity.Factor{Subject: "builder", Attributes: map[string]string{"team": secret + "\t"}}, `attribute "team": its value holds a control character`},
		{"escape sequence in a value", identity.Factor{Subject: "builder", Attributes: map[string]string{"team": "\x1b[31m" + secret}}, `attribute "team": its value holds a control character`},
		{"DEL in a value", identity.Factor{Subject: "builder", Attributes: map[string]string{"team": secret + "\x7f"}}, `attribute "team": its value holds a control character`},
		{"C1 control in a value", identity.Factor{Subject: "builder", Attributes: map[string]string{"team": secret + "\u0085"}}, `attribute "team": its value holds a control character`},
		{"bidi override in a value", identity.Factor{Subject: "builder", Attributes: map[string]string{"team": secret + "\u202e"}}, `attribute "team": its value holds a control character`},
		{"invalid UTF-8 in a value", identity.Factor{Subject: "builder", Attributes: map[string]string{"team": secret + "\xff"}}, `attribute "team": its value is not valid UTF-8`},
		{"control character in a key", identity.Factor{Subject: "builder", Attributes: map[string]string{"te\nam": "x"}}, `attribute "te\nam": its key holds a control character`},
		{"invalid UTF-8 in a key", identity.Factor{Subject: "builder", Attributes: map[string]string{"te\xffam": "x"}}, `attribute "te\xffam": its key is not valid UTF-8`},
		{"subject over the limit", identity.Factor{Subject: secret + big(identity.MaxFactorValueBytes)}, "the subject has"},
		{"newline in the subject", identity.Factor{Subject: secret + "\nforged"}, "the subject holds a control character"},
		{"invalid UTF-8 in the subject", identity.Factor{Subject: secret + "\xc3"}, "the subject is not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attrFactors[tc.name] = tc.f
			r := newPluginResolver(t, "idtest-misbehave", fmt.Sprintf("do: %q", tc.name))
			defer r.Close()
			ev := identity.Evidence{Source: netip.MustParseAddrPort("127.0.0.1:5000"), ProxyAuthorization: "Attest x", ProxyAuthorizations: 1}
			w, err := r.Resolve(t.Context(), ev, nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Resolve: %v; want the factor accepted", err)
				}
				if len(w.Factors) != 2 || w.Factors[1].Subject != tc.f.Subject || len(w.Factors[1].Attributes) != len(tc.f.Attributes) {
					t.Fatalf("Resolve: factors %d; want the plugin's as given", len(w.Factors))
				}
				return
			}
			if !errors.Is(err, identity.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "idtest-misbehave") {
				t.Fatalf("Resolve: %v; want an ErrInvalid naming idtest-misbehave and saying %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), secret) || len(err.Error()) > 1024 {
				t.Errorf("the error holds the value (%d bytes)", len(err.Error()))
			}
		})
	}
}
