package helm_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

// TestNetworkPolicyRunTokenClients checks, over value variants, that the
// gateway's NetworkPolicy admits networkPolicy.gateway.runTokenClients to
// the admin port (where `credgate run` asks for run tokens) exactly when
// run tokens are on and the list is not empty, as one ingress rule with
// those peers on the admin port only, leaving the other rules as they were (the gateway-settings variant
// renders it for kubeconform).
func TestNetworkPolicyRunTokenClients(t *testing.T) {
	const runTokensOn = `
admin:
  tokenSecret: {name: credgate-admin}
replicaCount: 1
config:
  runTokens:
    enabled: true
    workloads: [agent]
`
	const clients = `
networkPolicy:
  gateway:
    enabled: true
    runTokenClients:
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: agents}}
        podSelector: {matchLabels: {app: coder}}
      - podSelector: {matchExpressions: [{key: credgate-run, operator: Exists}]}
`
	const noClients = `
networkPolicy:
  gateway: {enabled: true}
`
	for _, tc := range []struct {
		name   string
		values string
		want   string // YAML peers of the extra admin-port rule; "" = no rule
	}{
		{name: "run-tokens-with-clients", values: runTokensOn + clients, want: `
- namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: agents}}
  podSelector: {matchLabels: {app: coder}}
- podSelector: {matchExpressions: [{key: credgate-run, operator: Exists}]}`},
		{name: "run-tokens-no-clients", values: runTokensOn + noClients},
		{name: "run-tokens-off-with-clients", values: clients},
		{name: "default", values: noClients},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			np := mustFind(t, parse(t, render(t, variant{name: "run-token-clients-" + tc.name, values: tc.values})), "NetworkPolicy", fullname)
			rules, _ := get(np, "spec.ingress").([]any)
			wantRules := 2
			if tc.want != "" {
				wantRules = 3
			}
			if len(rules) != wantRules {
				t.Fatalf("%d ingress rules, want %d: %v", len(rules), wantRules, rules)
			}
			if tc.want == "" {
				return
			}
			var want any
			if err := yaml.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, get(rules[2], "from")); diff != "" {
				t.Errorf("run-token rule peers (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]any{map[string]any{"port": 9090, "protocol": "TCP"}}, get(rules[2], "ports")); diff != "" {
				t.Errorf("run-token rule ports (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNetworkPolicyRunTokenClientsRefused checks that a peer naming
// neither selector, which the API server would refuse at install, is
// refused by the chart's schema.
func TestNetworkPolicyRunTokenClientsRefused(t *testing.T) {
	v := variant{name: "run-token-clients-empty-peer", values: `
networkPolicy:
  gateway:
    enabled: true
    runTokenClients: [{}]
`}
	_, err := runErr(helmBin, templateArgs(valuesArgs(t, v)...)...)
	if err == nil || !strings.Contains(err.Error(), "runTokenClients") {
		t.Fatalf("helm template: err = %v, want one naming runTokenClients", err)
	}
}
