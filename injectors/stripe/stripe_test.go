package stripe

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/injectors/injectortest"
	"github.com/credgate/credgate/providers"
)

const key = "sk_test_51s3cr3tK3y"

var cred = injectortest.Cred

func workload(name string, attrs map[string]string) identity.Workload {
	return identity.Workload{Name: name, Factors: []identity.Factor{{Kind: "jwt", Attributes: attrs}}}
}

func TestInject(t *testing.T) {
	tests := []struct {
		name, settings string
		cred           *providers.Credential
		wl             identity.Workload
		client, want   http.Header
		wantErr        error
	}{
		{name: "key only: the client's account goes, its version and idempotency key stay", cred: cred("token", key),
			client: http.Header{"Authorization": {"Bearer sk_test_placeholder"}, "Stripe-Account": {"acct_client"}, "Stripe-Version": {"2020-08-27"}, "Idempotency-Key": {"idem-1"}},
			want:   http.Header{"Authorization": {"Bearer " + key}, "Stripe-Version": {"2020-08-27"}, "Idempotency-Key": {"idem-1"}}},
		{name: "account and version pinned", settings: "account: acct_1Pinned\nversion: 2025-03-31.basil", cred: cred("token", key),
			client: http.Header{"Stripe-Account": {"acct_client"}, "Stripe-Version": {"2020-08-27"}, "Idempotency-Key": {"idem-2"}},
			want:   http.Header{"Authorization": {"Bearer " + key}, "Stripe-Account": {"acct_1Pinned"}, "Stripe-Version": {"2025-03-31.basil"}, "Idempotency-Key": {"idem-2"}}},
		{name: "account per workload", settings: "accounts: {billing-eu: acct_1Eu}\naccount: acct_1Default", cred: cred("token", key),
			wl:   workload("billing-eu", nil),
			want: http.Header{"Authorization": {"Bearer " + key}, "Stripe-Account": {"acct_1Eu"}}},
		{name: "other workload gets the default", settings: "accounts: {billing-eu: acct_1Eu}\naccount: acct_1Default", cred: cred("token", key),
			wl:   workload("billing-us", nil),
			want: http.Header{"Authorization": {"Bearer " + key}, "Stripe-Account": {"acct_1Default"}}},
		{name: "unlisted workload without a default is refused, not the platform", settings: "accounts: {billing-eu: acct_1Eu}", cred: cred("token", key),
			wl: workload("billing-us", nil), wantErr: injectors.ErrMissingField},
		{name: "account from a workload attribute", settings: "account: '{{.workload.stripe_account}}'", cred: cred("token", key),
			wl:   workload("shop", map[string]string{"stripe_account": "acct_1FromJWT"}),
			want: http.Header{"Authorization": {"Bearer " + key}, "Stripe-Account": {"acct_1FromJWT"}}},
		{name: "attribute that is not an account ID", settings: "account: '{{.workload.stripe_account}}'", cred: cred("token", key),
			wl: workload("shop", map[string]string{"stripe_account": "acct_1\r\nX-Evil: 1"}), wantErr: injectors.ErrMissingField},
		{name: "attribute missing", settings: "account: '{{.workload.stripe_account}}'", cred: cred("token", key),
			wl: workload("shop", nil), wantErr: injectors.ErrMissingField},
		{name: "restricted key", cred: cred("token", "rk_live_abc123"),
			want: http.Header{"Authorization": {"Bearer rk_live_abc123"}}},
		{name: "publishable key refused", cred: cred("token", "pk_live_abc123"), wantErr: ErrPublishableKey},
		{name: "not a Stripe key", cred: cred("token", "xoxb-123"), wantErr: injectors.ErrInvalidValue},
		{name: "key with a line break", cred: cred("token", "sk_test_a\r\nX: y"), wantErr: injectors.ErrInvalidValue},
		{name: "test key where live is required", settings: "mode: live", cred: cred("token", key), wantErr: injectors.ErrInvalidValue},
		{name: "missing field", settings: "field: secret_key", cred: cred("token", key), wantErr: injectors.ErrMissingField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inj, err := injectortest.Load(t, Name, tt.settings)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("POST", "https://api.stripe.com/v1/customers", nil)
			for k, v := range tt.client {
				r.Header[k] = v
			}
			before := r.Header.Clone()
			err = injectors.ApplyFor(inj, r, tt.cred, tt.wl)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				for _, v := range tt.cred.Fields {
					if strings.Contains(err.Error(), v.Reveal()) {
						t.Fatalf("error %q shows the key", err)
					}
				}
				if r.Header.Get("Authorization") != "" {
					t.Errorf("a failed injection set Authorization (client header before: %v)", before)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, r.Header); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSettings(t *testing.T) {
	for settings, want := range map[string]string{
		"": "",
		"account: acct_1Abc\nversion: 2024-06-20": "",
		"field: 'a b'":                   "not a field name",
		"mode: prod":                     `neither "live" nor "test"`,
		"account: cus_123":               "not a Stripe account ID",
		"account: '{{.x}}'":              "only {{.workload.NAME}}",
		"accounts: {a: acct_1, b: nope}": `"nope" for workload "b"`,
		"version: latest":                "not a Stripe API version",
		"acount: acct_1":                 `unknown field "acount"`,
	} {
		_, err := injectortest.Load(t, Name, settings)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("%q: error %q, want %q", settings, got, want)
		}
	}
}

func BenchmarkInject(b *testing.B) {
	inj, err := injectortest.Load(b, Name, "account: acct_1Pinned\nversion: 2025-03-31.basil")
	if err != nil {
		b.Fatal(err)
	}
	c := cred("token", key)
	r := httptest.NewRequest("POST", "https://api.stripe.com/v1/customers", nil)
	r.Header.Set("Idempotency-Key", "idem")
	b.ReportAllocs()
	for b.Loop() {
		if err := injectors.Apply(inj, r, c); err != nil {
			b.Fatal(err)
		}
	}
}
