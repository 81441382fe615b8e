package gateway

import (
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/providers"
)

// BenchmarkAuditLine measures one request's audit line, encoded and
// written through the Writer to io.Discard, with the chain off, on, and on
// with a checkpoint signed every 1000 lines. The Writer is closed inside
// the timing, so the flusher's work (hashing, signing, writing) is
// counted; run it with -cpu 1 to see all of it as one core's time per
// line (docs/performance.md).
func BenchmarkAuditLine(b *testing.B) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	cred := &providers.Credential{Fields: map[string]providers.Secret{"token": providers.NewSecret("sk_live_0123456789abcdef0123456789")}}
	for _, bc := range []struct {
		name string
		opts audit.Options
	}{
		{"unchained", audit.Options{Unchained: true}},
		{"chained", audit.Options{}},
		{"chained_signed", audit.Options{Signer: audit.NewKeySigner(priv)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			a := &auditor{fp: audit.NewFingerprinter(nil)}
			a.pool.New = func() any { s := make([]byte, 0, 512); return &s }
			bc.opts.Replica = "gw-bench"
			bc.opts.Log = slog.New(slog.DiscardHandler)
			a.w = audit.NewWriter(io.Discard, bc.opts)
			ev := event{
				Time: time.Now(), Workload: "billing-api", Factors: []identity.Factor{{Kind: "source"}, {Kind: "mtls"}}, Source: "10.1.4.7",
				Method: "POST", Scheme: "https", Host: "api.stripe.com", Port: 443, Path: "/v1/payment_intents",
				Rule: "billing-write", Decision: "inject", Credential: "stripe-secret-key", CacheHit: true, Status: 200,
				BytesIn: 512, BytesOut: 2048, Duration: 143200 * time.Microsecond, Upstream: 140900 * time.Microsecond,
				PolicyVersion: "9f2c0b6a3e1d4c5b8a7f6e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a291",
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e := ev
				e.CredentialFP = a.fingerprint(cred)
				a.write(&e)
			}
			if err := a.w.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkInjectKeepAliveAudit is BenchmarkInjectKeepAlive with the
// audit chain off and on (with checkpoints): the throughput cost of the
// chain (without and with checkpoints) on the whole request path.
func BenchmarkInjectKeepAliveAudit(b *testing.B) {
	for _, bc := range []struct{ name, cfg string }{
		{"unchained", "audit: {chain: false}\n"},
		{"chained", ""},
		{"chained_signed", "audit: {checkpoint: {key_file: audit.key}}\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			pki := newTestPKI(b, apiHost, tunnelHost, "credgate.test")
			tg := newTestGateway(b, pki, startOrigin(b, pki))
			writeAuditKey(b, tg.dir)
			writeFile(b, tg.dir, "policy.yaml", []byte(testPolicy))
			tg.run(b, "resolve: {\"api.origin.test:443\": \""+tg.origin.addr+"\"}\n"+bc.cfg)
			// The test sink is a growing buffer: empty it as a file's
			// writes would, so that its growth (longer lines grow it more)
			// is not measured.
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				t := time.NewTicker(20 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-stop:
						return
					case <-t.C:
						tg.audit.Reset()
					}
				}
			}()
			benchKeepAlive(b, tg)
		})
	}
}
