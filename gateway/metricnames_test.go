package gateway

import (
	"slices"
	"testing"
)

// TestMetricNames checks that MetricNames lists the metrics of every
// optional part, including vectors that have no series yet.
func TestMetricNames(t *testing.T) {
	names := MetricNames()
	for _, want := range []string{
		"credgate_requests_total",           // a vector without series
		"credgate_request_duration_seconds", // a histogram
		"credgate_redis_up",                 // cache.redis
		"credgate_switch_last_sync_timestamp_seconds",
		"credgate_svid_expiry_timestamp_seconds", // identity.mtls.workload_api
		"credgate_tokenreview_requests_total",    // identity.kubernetes
		"credgate_audit_stalled",
		"process_start_time_seconds",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("MetricNames() has no %s; have %v", want, names)
		}
	}
	if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("MetricNames() is not sorted and unique: %v", names)
	}
}
