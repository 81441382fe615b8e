package gateway

import (
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/providers"
)

// BenchmarkMetricsRequest is the metrics every forwarded request records:
// one credgate_requests_total series, the duration histogram and one
// credential cache lookup. "labels" looks the series up by their label
// values each time (WithLabelValues), as before the counters were kept by
// label (docs/performance.md, issue 20).
func BenchmarkMetricsRequest(b *testing.B) {
	m := newMetrics(func() float64 { return 0 })
	d := 180 * time.Microsecond
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.request("inject", "billing-charges", 200, d)
			m.CacheLookup(providers.CacheKey{}, providers.CacheHit)
		}
	})
	b.Run("labels", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.requests.WithLabelValues("inject", "billing-charges", strconv.Itoa(200)).Inc()
			m.duration.Observe(d.Seconds())
			m.cache.WithLabelValues(string(providers.CacheHit)).Inc()
		}
	})
}

// TestCachedDerivations checks the values kept per credential: the
// credential_fp and the request counters are those computed directly, a
// refreshed credential (another pointer, other values) gets its own.
func TestCachedDerivations(t *testing.T) {
	a := &auditor{fp: audit.NewFingerprinter([]byte("0123456789abcdef"))}
	c1 := &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret("tok-one-0123456789")}}
	c2 := &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret("tok-two-0123456789")}}
	for range 2 {
		if got, want := a.credentialFP(c1), a.fingerprint(c1); got != want {
			t.Errorf("credentialFP(c1) = %s, want %s", got, want)
		}
		if got, want := a.credentialFP(c2), a.fingerprint(c2); got != want {
			t.Errorf("credentialFP(c2) = %s, want %s", got, want)
		}
	}
	if a.credentialFP(c1) == a.credentialFP(c2) {
		t.Error("two credentials share a fingerprint")
	}
	if got := a.credentialFP(nil); got != "" {
		t.Errorf("credentialFP(nil) = %q", got)
	}

	m := newMetrics(func() float64 { return 0 })
	for range 3 {
		m.request("inject", "r1", 200, time.Millisecond)
	}
	m.request("inject", "r1", 502, time.Millisecond)
	m.request("deny", "", 403, time.Millisecond)
	m.CacheLookup(providers.CacheKey{}, providers.CacheHit)
	m.CacheLookup(providers.CacheKey{}, providers.CacheResult("other"))
	for _, tc := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"inject", "r1", "200"}, 3},
		{[]string{"inject", "r1", "502"}, 1},
		{[]string{"deny", "", "403"}, 1},
	} {
		if got := counterValue(t, m.requests.WithLabelValues(tc.labels...)); got != tc.want {
			t.Errorf("credgate_requests_total%v = %v, want %v", tc.labels, got, tc.want)
		}
	}
	for r, want := range map[string]float64{"hit": 1, "other": 1, "miss": 0} {
		if got := counterValue(t, m.cache.WithLabelValues(r)); got != want {
			t.Errorf("credgate_credential_cache_total{result=%s} = %v, want %v", r, got, want)
		}
	}
}

// counterValue reads a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
