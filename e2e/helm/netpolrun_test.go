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
// run tokens are on and the list is not empty (set while they are off, it
// is refused: TestNetworkPolicyRunTokenClientsRefused), as one ingress rule with
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

// TestNetworkPolicyRunTokenClientsRefused checks the class "runTokenClients
// set where it cannot take effect fails the render with the setting to
// change, never renders silently": a peer naming neither selector, which
// the API server would refuse at install (the chart's schema), peers while
// run tokens are off, and peers while the gateway's NetworkPolicy is off
// (with run tokens on or off). Before, the last three rendered without
// the rule and without a word (3 of 4 cases failed).
func TestNetworkPolicyRunTokenClientsRefused(t *testing.T) {
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
    runTokenClients:
      - podSelector: {matchLabels: {app: coder}}
`
	for _, tc := range []struct {
		name, values, want string
	}{
		{"empty-peer", "networkPolicy:\n  gateway:\n    enabled: true\n    runTokenClients: [{}]\n", "runTokenClients"},
		{"run-tokens-off", "networkPolicy:\n  gateway:\n    enabled: true" + clients, "networkPolicy.gateway.runTokenClients needs config.runTokens.enabled"},
		{"network-policy-off", runTokensOn + "networkPolicy:\n  gateway:\n    enabled: false" + clients, "networkPolicy.gateway.runTokenClients needs networkPolicy.gateway.enabled"},
		{"both-off", "networkPolicy:\n  gateway:\n    enabled: false" + clients, "networkPolicy.gateway.runTokenClients needs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := variant{name: "run-token-clients-" + tc.name, values: tc.values}
			_, err := runErr(helmBin, templateArgs(valuesArgs(t, v)...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("helm template: err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}
