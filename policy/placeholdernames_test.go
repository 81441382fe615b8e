package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestPlaceholderNamesUnambiguous: the names of placeholder uses
// (PlaceholderUse.Name: CREDENTIAL, or CREDENTIAL@WORKLOAD for a generated
// one; and "custody" for custody placeholders) are what audit lines, logs
// and kill switch reasons say a tripwire was. For names built around every
// separator character, two distinct (credential, workload) pairs that a
// policy can define never share one name. Before credential names were
// refused '@' (and "custody"), credential "a@b" (fixed) and credential "a"
// generated for workload "b" were both "a@b", and a credential "custody"
// was the custody tripwire.
func TestPlaceholderNamesUnambiguous(t *testing.T) {
	seps := []string{"@", "/", ":", "|", "}", "%", ".", "-", "_", "#", "=", "+", "~", "!", "$", "\\"}
	accepted := func(kind, name string) bool {
		var src string
		switch kind {
		case "credential":
			src = fmt.Sprintf("credentials:\n  %q: {provider: policytest, value: v}\nrules: []\ndefault: deny\n", name)
		case "workload":
			src = fmt.Sprintf("workloads:\n  %q: {cidrs: [10.0.0.0/8]}\nrules: []\ndefault: deny\n", name)
		}
		p, err := Parse(context.Background(), "n.yaml", []byte(src))
		if err == nil {
			p.Close()
		}
		return err == nil
	}
	cases := map[string][]string{
		// The custody tripwire's name against a credential's.
		"reserved": {"a", "custody", "anonymous"},
	}
	order := []string{"reserved"}
	for _, s := range seps {
		k := fmt.Sprintf("%q", s)
		cases[k] = []string{"a", "b", "a" + s + "b", "b" + s + "a", s + "a", "a" + s, "a" + s + s + "b", "anonymous"}
		order = append(order, k)
	}
	failed := 0
	for _, k := range order {
		names := cases[k]
		t.Run(k, func(t *testing.T) {
			var creds, wls []string
			for _, n := range names {
				if accepted("credential", n) {
					creds = append(creds, n)
				}
				if accepted("workload", n) {
					wls = append(wls, n)
				}
			}
			type pair struct{ cred, wl string }
			seen := map[string]pair{"custody": {cred: "(custody placeholders)"}}
			collided := false
			for _, c := range creds {
				// A fixed placeholder (no workload), generated ones for
				// every workload and for anonymous callers.
				for _, w := range append([]string{"", "anonymous"}, wls...) {
					u := PlaceholderUse{Credential: c, Workload: w}
					if prev, dup := seen[u.Name()]; dup && prev != (pair{c, w}) {
						collided = true
						t.Errorf("credential %q workload %q and credential %q workload %q are both named %q", prev.cred, prev.wl, c, w, u.Name())
					}
					seen[u.Name()] = pair{c, w}
				}
			}
			if collided {
				failed++
			}
		})
	}
	t.Logf("%d of %d cases gave two pairs one name", failed, len(order))
}

// TestCredentialNameErrors: the names a credential may not have are
// refused at load with the reason and the fix.
func TestCredentialNameErrors(t *testing.T) {
	src := "credentials:\n  \"svc@prod\": {provider: policytest, value: v}\n  custody: {provider: policytest, value: v}\nrules: []\ndefault: deny\n"
	_, err := Parse(context.Background(), "p.yaml", []byte(src))
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	for _, want := range []string{
		`p.yaml:2:3: credential name "svc@prod" must not contain '@'`,
		`p.yaml:3:3: credential name "custody" is reserved`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors:\n%v\nwant a line containing %q", err, want)
		}
	}
}
