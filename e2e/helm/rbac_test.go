package helm_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

// builtinClusterRoles are the rules of the Kubernetes default ClusterRoles
// a binding may name.
var builtinClusterRoles = map[string][]string{
	"system:auth-delegator": {"authentication.k8s.io/tokenreviews:create", "authorization.k8s.io/subjectaccessreviews:create"},
}

// TestRBACIsMinimal checks, over every variant, that the gateway's
// ServiceAccount is granted exactly what its config uses: creating
// TokenReviews when identity.kubernetes verifies tokens with the API
// server, nothing otherwise (the JWKS of identity.jwt.kubernetes is
// readable by every service account through
// system:service-account-issuer-discovery).
func TestRBACIsMinimal(t *testing.T) {
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			objs := parse(t, render(t, v))
			var cfg map[string]any
			raw, _ := get(mustFind(t, objs, "ConfigMap", fullname+"-config"), "data.[config.yaml]").(string)
			if err := yaml.Unmarshal([]byte(raw), &cfg); err != nil {
				t.Fatalf("config.yaml: %v", err)
			}
			var want []string
			if get(cfg, "identity.kubernetes") != nil {
				want = []string{"authentication.k8s.io/tokenreviews:create"}
			}
			var got []string
			for _, b := range objs {
				if b.kind() != "ClusterRoleBinding" && b.kind() != "RoleBinding" {
					continue
				}
				subjects, _ := get(b, "subjects").([]any)
				if !slices.ContainsFunc(subjects, func(s any) bool { return get(s, "name") == fullname && get(s, "kind") == "ServiceAccount" }) {
					continue
				}
				role := fmt.Sprint(get(b, "roleRef.name"))
				if rules, ok := builtinClusterRoles[role]; ok {
					got = append(got, rules...)
					continue
				}
				r := find(objs, fmt.Sprint(get(b, "roleRef.kind")), role)
				if r == nil {
					t.Errorf("%s %s binds %s %s, which is neither rendered nor a known default role", b.kind(), b.name(), get(b, "roleRef.kind"), role)
					continue
				}
				rules, _ := get(r, "rules").([]any)
				for _, rule := range rules {
					for _, g := range get(rule, "apiGroups").([]any) {
						for _, res := range get(rule, "resources").([]any) {
							for _, verb := range get(rule, "verbs").([]any) {
								got = append(got, fmt.Sprintf("%v/%v:%v", g, res, verb))
							}
						}
					}
				}
			}
			slices.Sort(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("permissions of the gateway's ServiceAccount (-want +got):\n%s", diff)
			}
		})
	}
}
