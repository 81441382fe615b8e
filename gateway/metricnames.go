package gateway

import (
	"io"
	"regexp"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/identity"
)

// MetricNames returns the name of every metric family a gateway can export
// on /metrics, sorted: those of a gateway with every optional part enabled
// (cache.redis, identity.mtls.workload_api, identity.kubernetes), whether
// or not a series exists yet (a counter vector shows no series before its
// first event). Histograms are listed by family name; their series add
// _bucket, _sum and _count. The chart's dashboard and alert tests check
// every query against it, so they name only what the gateway exports.
func MetricNames() []string {
	m := newMetrics(func() float64 { return 0 })
	m.enableRedis()
	m.interceptionCA(func() mitm.IssuerStats { return mitm.IssuerStats{} })
	m.upstreamHTTP2(newH2Conns(0, 0))
	m.enableSVID(func() identity.SVIDStatus { return identity.SVIDStatus{} })
	m.enableTokenReview(func() identity.TokenReviewStats { return identity.TokenReviewStats{} })
	newSwitchMetrics(m.reg, true)
	w := audit.NewWriter(io.Discard, audit.Options{})
	defer w.Close()
	m.auditWriter(w, nil, nil)
	m.policyFile(func() bool { return true })

	descs := make(chan *prometheus.Desc)
	go func() {
		m.reg.Describe(descs)
		close(descs)
	}()
	var names []string
	for d := range descs {
		// Desc keeps its name unexported; its String form has been
		// `Desc{fqName: "NAME", ...` since client_golang 0.9
		// (TestMetricNames fails if that changes).
		if sm := descName.FindStringSubmatch(d.String()); sm != nil {
			names = append(names, sm[1])
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

var descName = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)
