package runtoken

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/redistest"
)

// BenchmarkResolveRunToken is the jwt factor's cost for a run token it
// has verified before (the cache), with the revocation check each
// connection makes: in memory, and against a local Redis.
func BenchmarkResolveRunToken(b *testing.B) {
	run := func(b *testing.B, opts Options) {
		is, err := New(Config{Workloads: []string{"agent"}}, opts)
		if err != nil {
			b.Fatal(err)
		}
		defer is.Close()
		r, err := identity.New(context.Background(), identity.Config{}, identity.WithLocalIssuer(is))
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		tok, _ := is.Issue("agent", time.Hour)
		specs := []identity.Spec{{Name: "agent", Require: []string{identity.KindJWT}, Claims: map[string]string{"iss": DefaultIssuer, "sub": "agent"}}}
		ev := identity.Evidence{Source: netip.MustParseAddrPort("127.0.0.1:5000"), ProxyAuthorization: "Bearer " + tok.Value.Reveal()}
		ctx := context.Background()
		b.ResetTimer()
		for b.Loop() {
			if w, err := r.Resolve(ctx, ev, specs); err != nil || w.Name != "agent" {
				b.Fatal(w.Name, err)
			}
		}
	}
	b.Run("memory", func(b *testing.B) { run(b, Options{}) })
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer rdb.Close()
		run(b, Options{Redis: rdb})
	})
}
