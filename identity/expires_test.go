package identity

import (
	"testing"
	"time"
)

// TestWorkloadExpires: a workload expires with the first of its verified
// factors to expire (the gateway closes long-lived connections then);
// factors that do not expire add nothing.
func TestWorkloadExpires(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		factors []Factor
		want    time.Time
	}{
		{"no factor", nil, time.Time{}},
		{"source only", []Factor{{Kind: KindSource}}, time.Time{}},
		{"token", []Factor{{Kind: KindSource}, {Kind: KindJWT, Expires: t0.Add(time.Hour)}}, t0.Add(time.Hour)},
		{"token before certificate", []Factor{{Kind: KindMTLS, Expires: t0.Add(90 * 24 * time.Hour)}, {Kind: KindJWT, Expires: t0.Add(10 * time.Minute)}}, t0.Add(10 * time.Minute)},
		{"certificate before token", []Factor{{Kind: KindJWT, Expires: t0.Add(time.Hour)}, {Kind: KindMTLS, Expires: t0.Add(time.Minute)}}, t0.Add(time.Minute)},
		{"reviewed token", []Factor{{Kind: KindSource}, {Kind: KindKubernetes, Expires: t0.Add(5 * time.Minute)}, {Kind: KindJWT, Expires: t0.Add(6 * time.Minute)}}, t0.Add(5 * time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := (Workload{Factors: tc.factors}).Expires(); !got.Equal(tc.want) {
				t.Errorf("Expires() = %v, want %v", got, tc.want)
			}
		})
	}
}
