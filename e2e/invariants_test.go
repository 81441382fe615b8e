package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// spoofPolicy is basePolicy plus a workload that only a caller at
// 10.9.9.9 is, with a rule that lets it reach other.origin.test.
var spoofPolicy = strings.Replace(strings.Replace(basePolicy, "workloads:\n", `workloads:
  spoofed:
    cidrs: [10.9.9.9/32]
`, 1), "rules:\n", `rules:
  - name: spoofed-only
    from: spoofed
    to: spoof-target
    inject:
      credential: api-token
      as: bearer
`, 1)

// TestIdentityHeadersIgnored: identity comes only from verified factors
// (invariant 7). A client at 127.0.0.1 that claims another address or a
// client certificate in headers is still the caller at 127.0.0.1, and
// such headers never reach the origin.
func TestIdentityHeadersIgnored(t *testing.T) {
	t.Parallel()
	pol := strings.Replace(spoofPolicy, "destinations:\n", "destinations:\n  spoof-target:\n    hosts: [other.origin.test]\n    allow_private: true\n", 1)
	e := startEnv(t, envOptions{Policy: pol})
	claims := []string{
		"X-Forwarded-For: 10.9.9.9",
		"X-Real-IP: 10.9.9.9",
		"Forwarded: for=10.9.9.9",
		"X-Client-Cert: MIIBszCCAVmgAwIBAgIBAjAKBggqhkjOPQQDAjA",
		"X-Forwarded-Client-Cert: By=spiffe://example.org/ns/x/sa/y",
	}
	_, resp := rawConnect(t, e, otherHost+":443", claims...)
	checkDenial(t, resp.StatusCode, resp.Header, readAll(t, resp), http.StatusForbidden, "no_rule", "")

	// Inside an allowed tunnel the same headers are neither trusted nor
	// forwarded.
	for _, c := range clients {
		t.Run(c.Name(), func(t *testing.T) {
			h := http.Header{}
			for _, kv := range claims {
				k, v, _ := strings.Cut(kv, ": ")
				h.Set(k, v)
			}
			path := "/v1/claims-" + c.Name()
			r := c.Do(t, e, clientRequest{URL: "https://" + apiHost + path, Header: h})
			if r.Err != "" || r.Status != http.StatusOK {
				t.Fatalf("status %d err %s", r.Status, r.Err)
			}
			got := e.origin.one(t, path)
			for _, kv := range claims {
				k, _, _ := strings.Cut(kv, ": ")
				if v := got.Header.Get(k); v != "" {
					t.Errorf("origin received %s: %q", k, v)
				}
			}
		})
	}
	for _, ev := range e.audit() {
		if ev.Workload == "spoofed" {
			t.Errorf("a request was attributed to the spoofed workload: %+v", ev)
		}
	}
}

// unavailablePolicy has a rule whose credential cannot be obtained.
var unavailablePolicy = strings.Replace(strings.Replace(basePolicy, "credentials:\n", `credentials:
  never-set:
    provider: static
    env: CREDGATE_E2E_NEVER_SET
`, 1), "rules:\n", `rules:
  - name: needs-missing
    from: local
    to: api
    paths: [/v1/missing*]
    inject:
      credential: never-set
      as: bearer
`, 1)

// TestFailClosed: a credential that cannot be obtained makes the gateway
// answer with a reason, and the request is never forwarded without it
// (invariant 6). An unset variable is not temporary: 502
// credential_not_configured, no Retry-After (503 with Retry-After is for a
// source that is down: TestOAuth2*).
func TestFailClosed(t *testing.T) {
	t.Parallel()
	e := startEnv(t, envOptions{Policy: unavailablePolicy})
	for _, c := range clients {
		t.Run(c.Name(), func(t *testing.T) {
			path := "/v1/missing-" + c.Name()
			r := c.Do(t, e, clientRequest{URL: "https://" + apiHost + path, Header: http.Header{"Authorization": {"Bearer client-value"}}})
			if r.Err != "" {
				t.Fatalf("client error: %s", r.Err)
			}
			d := checkDenialStatus(t, r.Status, r.Header, r.Body, http.StatusBadGateway, "credential_not_configured")
			if d.Rule != "needs-missing" {
				t.Errorf("body rule = %q, want needs-missing", d.Rule)
			}
			if ra := r.Header.Get("Retry-After"); ra != "" {
				t.Errorf("Retry-After %q on a credential that is not configured; retrying cannot help", ra)
			}
			if strings.Contains(r.Body, "CREDGATE_E2E_NEVER_SET") {
				t.Errorf("the answer names an internal detail: %s", r.Body)
			}
			if got := e.origin.byPath(path); len(got) != 0 {
				t.Errorf("origin saw %d requests for %s; nothing may be forwarded without its credential", len(got), path)
			}
		})
	}
}

// checkDenialStatus is checkDenial for gateway answers other than 403.
func checkDenialStatus(t *testing.T, status int, header http.Header, body string, wantStatus int, wantCode string) denial {
	t.Helper()
	return checkDenial(t, status, header, body, wantStatus, wantCode, "*")
}
