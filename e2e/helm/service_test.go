package helm_test

import "testing"

// TestServiceKeepsClientAddress renders each proxy Service type and
// checks that one reachable from outside the cluster (NodePort,
// LoadBalancer) keeps the client's address (externalTrafficPolicy: Local):
// the gateway identifies callers by their source network (policy
// workloads' cidrs:, the default policy's 10.0.0.0/8), and with the
// default policy (Cluster) a node rewrites an outside client's address to
// its own, inside that network. The admin Service stays ClusterIP.
func TestServiceKeepsClientAddress(t *testing.T) {
	for _, typ := range []string{"ClusterIP", "NodePort", "LoadBalancer"} {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			objs := parse(t, run(t, helmBin, templateArgs("--set", "service.type="+typ, "--set", "tls.enabled=true", "--set", "tls.existingSecret=gw-tls")...))
			svc := mustFind(t, objs, "Service", fullname)
			got := get(svc, "spec.externalTrafficPolicy")
			if typ == "ClusterIP" {
				if got != nil {
					t.Errorf("ClusterIP Service has externalTrafficPolicy %v", got)
				}
			} else if got != "Local" {
				t.Errorf("%s Service externalTrafficPolicy = %v, want Local: outside clients would reach the gateway with a node's address", typ, got)
			}
			if a := get(mustFind(t, objs, "Service", fullname+"-admin"), "spec.type"); a != "ClusterIP" {
				t.Errorf("admin Service type = %v, want ClusterIP", a)
			}
		})
	}
}
