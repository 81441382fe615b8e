package stripe

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/injectors/injectortest"
)

const key = "sk_test_51s3cr3tK3y"

var cred = injectortest.Cred

func workload(name string, attrs map[string]string) identity.Workload {
	return identity.Workload{Name: name, Factors: []identity.Factor{{Kind: "jwt", Attributes: attrs}}}
}

func TestInject(t *testing.T) {
	injectortest.Run(t, Name, "https://api.stripe.com/v1/customers", []injectortest.Case{
		{Name: "key only: the client's account goes, its version and idempotency key stay", Cred: cred("token", key),
			Client: http.Header{"Authorization": {"Bearer sk_test_placeholder"}, "Stripe-Account": {"acct_client"}, "Stripe-Version": {"2020-08-27"}, "Idempotency-Key": {"idem-1"}},
			Want:   http.Header{"Authorization": {"Bearer " + key}, "Stripe-Version": {"2020-08-27"}, "Idempotency-Key": {"idem-1"}}},
		{Name: "account and version pinned", Settings: "account: acct_1Pinned\nversion: 2025-03-31.basil", Cred: cred("token", key),
			Client: http.Header{"Stripe-Account": {"acct_client"}, "Stripe-Version": {"2020-08-27"}, "Idempotency-Key": {"idem-2"}},
			Want:   http.Header{"Authorization": {"Bearer " + key}, "Stripe-Account": {"acct_1Pinned"}, "Stripe-Version": {"2025-03-31.basil"}, "Idempotency-Key": {"idem-2"}}},
		{Name: "account per workload", Settings: "accounts: {billing-eu: acct_1Eu}\naccount: acct_1Default", Cred: cred("token", key),
			Workload: workload("billing-eu", nil),
			Want:     http.Header{"Authorization": {"Bearer " + key}, "Stripe-Account": {"acct_1Eu"}}},
		{Name: "other workload gets the default", Settings: "accounts: {billing-eu: acct_1Eu}\naccount: acct_1Default", Cred: cred("token", key),
			Workload: workload("billing-us", nil),
			Want:     http.Header{"Authorization": {"Bearer " + key}, "Stripe-Account": {"acct_1Default"}}},
		{Name: "unlisted workload without a default is refused, not the platform", Settings: "accounts: {billing-eu: acct_1Eu}", Cred: cred("token", key),
			Workload: workload("billing-us", nil), WantErr: injectors.ErrRequest},
		{Name: "account from a workload attribute", Settings: "account: '{{.workload.stripe_account}}'", Cred: cred("token", key),
			Workload: workload("shop", map[string]string{"stripe_account": "acct_1FromJWT"}),
			Want:     http.Header{"Authorization": {"Bearer " + key}, "Stripe-Account": {"acct_1FromJWT"}}},
		{Name: "attribute that is not an account ID", Settings: "account: '{{.workload.stripe_account}}'", Cred: cred("token", key),
			Workload: workload("shop", map[string]string{"stripe_account": "acct_1\r\nX-Evil: 1"}), WantErr: injectors.ErrRequest},
		{Name: "attribute missing", Settings: "account: '{{.workload.stripe_account}}'", Cred: cred("token", key),
			Workload: workload("shop", nil), WantErr: injectors.ErrRequest},
		{Name: "restricted key", Cred: cred("token", "rk_live_abc123"),
			Want: http.Header{"Authorization": {"Bearer rk_live_abc123"}}},
		{Name: "publishable key refused", Cred: cred("token", "pk_live_abc123"), WantErr: ErrPublishableKey},
		{Name: "not a Stripe key", Cred: cred("token", "xoxb-123"), WantErr: injectors.ErrInvalidValue},
		{Name: "key with a line break", Cred: cred("token", "sk_test_a\r\nX: y"), WantErr: injectors.ErrInvalidValue},
		{Name: "test key where live is required", Settings: "mode: live", Cred: cred("token", key), WantErr: injectors.ErrInvalidValue},
		{Name: "missing field", Settings: "field: secret_key", Cred: cred("token", key), WantErr: injectors.ErrMissingField},
	})
}

func TestSettings(t *testing.T) {
	injectortest.CheckSettings(t, Name, map[string]string{
		"": "",
		"account: acct_1Abc\nversion: 2024-06-20": "",
		"field: 'a b'":                   "not a field name",
		"mode: prod":                     `neither "live" nor "test"`,
		"account: cus_123":               "not a Stripe account ID",
		"account: '{{.x}}'":              "only {{.workload.NAME}}",
		"accounts: {a: acct_1, b: nope}": `"nope" for workload "b"`,
		"version: latest":                "not a Stripe API version",
		"acount: acct_1":                 `unknown field "acount"`,
	})
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
