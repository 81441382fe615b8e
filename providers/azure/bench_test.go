package azure_test

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/internal/azuretest"
	"github.com/credgate/credgate/providers"
	"github.com/credgate/credgate/providers/azure"
)

// benchWarm measures what the gateway does per request once p's
// credential is cached: bind p to the caller (CacheScope), get the
// credential from the cache (a hit), and inject it as a bearer token.
func benchWarm(b *testing.B, p providers.Provider, wl identity.Workload) {
	c := providers.NewCache(providers.CacheOptions{})
	b.Cleanup(func() { c.Close() })
	bearer, err := injectors.Load(context.Background(), "bearer", nil)
	if err != nil {
		b.Fatal(err)
	}
	key := providers.CacheKey{Credential: "azure", Version: "1", Provider: azure.Name}
	ctx := context.Background()
	if _, _, err := c.GetBound(ctx, providers.Bind(p, key, wl)); err != nil {
		b.Fatal(err)
	}
	base := httptest.NewRequest("GET", "https://acmereports.blob.core.windows.net/reports/q4.csv", nil)
	b.ReportAllocs()
	for b.Loop() {
		cred, hit, err := c.GetBound(ctx, providers.Bind(p, key, wl))
		if err != nil || !hit {
			b.Fatalf("warm Get: hit %v, %v", hit, err)
		}
		r := base.Clone(ctx)
		if err := injectors.Apply(bearer, r, cred); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWarmCertificate: an azure token (certificate assertion) at a
// warm cache, as the gateway serves it per request.
func BenchmarkWarmCertificate(b *testing.B) {
	f := newFixture(b, azuretest.EntraOptions{})
	benchWarm(b, load(b, f.base+"client_certificate: {file: "+f.certFile+"}\n", nil), identity.Workload{Name: "billing"})
}

// BenchmarkWarmFederated: a per-workload azure token (federated) at a
// warm cache: its cache scope hashes the workload's token per request.
func BenchmarkWarmFederated(b *testing.B) {
	f := newFixture(b, azuretest.EntraOptions{})
	tok := issuerTokenB(b, "system:serviceaccount:billing:api")
	benchWarm(b, load(b, f.base+"federated: {factor: jwt}\n", nil), workload("billing", identity.KindJWT, tok))
}

// BenchmarkWarmStaticBearer is the baseline: a static token at a warm
// cache, injected as a bearer token.
func BenchmarkWarmStaticBearer(b *testing.B) {
	b.Setenv("AZURE_BENCH_TOKEN", "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.e30.sig")
	var n yamlNode
	p, err := providers.Load(context.Background(), "static", n.of(b, "env: AZURE_BENCH_TOKEN"))
	if err != nil {
		b.Fatal(err)
	}
	benchWarm(b, p, identity.Workload{Name: "billing"})
}
