package gateway

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// reviewedToken is the token the test TokenReview endpoint
// authenticates, as service account jobs/runner: a projected
// service-account token's shape, with an exp (in 2100), which the
// kubernetes factor requires.
const reviewedToken = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.eyJpc3MiOiJodHRwczovL2t1YmVybmV0ZXMuZGVmYXVsdC5zdmMiLCJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6am9iczpydW5uZXIiLCJleHAiOjQxMDI0NDQ4MDB9.c2lnbmF0dXJl"

// startTokenReview emulates the Kubernetes TokenReview endpoint:
// reviewedToken is service account jobs/runner, every other token is
// unauthenticated. It returns the kubernetes section of the identity
// config and the number of reviews asked for.
func startTokenReview(t *testing.T, tg *testGateway) (config string, reviews *atomic.Int64) {
	t.Helper()
	reviews = &atomic.Int64{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" || r.Header.Get("Authorization") != "Bearer gateway-sa" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		reviews.Add(1)
		var tr struct {
			Spec struct {
				Token     string   `json:"token"`
				Audiences []string `json:"audiences"`
			} `json:"spec"`
		}
		_ = json.NewDecoder(r.Body).Decode(&tr)
		status := map[string]any{"authenticated": false, "error": "token has been invalidated"}
		if tr.Spec.Token == reviewedToken {
			status = map[string]any{"authenticated": true, "audiences": tr.Spec.Audiences, "user": map[string]any{
				"username": "system:serviceaccount:jobs:runner", "uid": "2"}}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status})
	}))
	t.Cleanup(srv.Close)
	writeFile(t, tg.dir, "k8s-ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	writeFile(t, tg.dir, "gateway-sa-token", []byte("gateway-sa"))
	return fmt.Sprintf(`  kubernetes:
    api_server: %q
    ca_file: k8s-ca.pem
    token_file: gateway-sa-token
    audiences: [credgate]
`, srv.URL), reviews
}

// svidToken is a JWT-SVID of spiffe://test.example/ns/jobs/sa/runner.
func svidToken(t *testing.T, signer jose.Signer) string {
	t.Helper()
	tok, err := jwt.Signed(signer).Claims(map[string]any{
		"sub": "spiffe://test.example/ns/jobs/sa/runner", "aud": []string{"credgate"},
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// reidentifyOther is the definition of workload other, which the
// rules name beside local.
const reidentifyOther = "  other: {cidrs: [10.9.9.9/32]}\n"

// TestReloadReidentifiesWhatIsOpen checks the class "a reload that
// changes a workload definition ends what that workload no longer is":
// for each kind of factor a workload can be selected by (the source
// address, a SPIFFE ID from a JWT-SVID, a token's claims, a required
// factor, a TokenReview's namespace and service account), the open
// tunnel, WebSocket, streamed answers and bodies (HTTP/1.1 and HTTP/2)
// of workload local, admitted by rules naming it or by rules from "*"
// (which admit any workload: only identifying again tells that the
// workload changed), are identified again from the factors they proved
// under the new definitions. When the definition narrows so that they
// no longer match, is removed or renamed (whatever the rules say of the
// new name), or another workload listed first now takes them, they end
// (policy_changed, counted and audited); when it is unchanged (another
// workload's definition changes) or widened, they run on. The next request on a kept-alive
// connection is identified afresh. Nothing is verified again for the
// scan: no TokenReview is asked for. Before, a workload's definition
// changed only what new connections and requests were.
func TestReloadReidentifiesWhatIsOpen(t *testing.T) {
	for _, kind := range []struct {
		name string
		// base is local's definition; narrowed and widened are its
		// edits; taker is a definition that, listed before local,
		// takes local's connections.
		base, narrowed, widened, taker string
		// bearer is the Proxy-Authorization token presented: "jobs"
		// (a Kubernetes service-account JWT of jobs/runner), "svid"
		// (a JWT-SVID), "reviewed" (opaque, for TokenReview) or none.
		bearer string
	}{
		{name: "source", base: "{cidrs: [127.0.0.1/32]}", narrowed: "{cidrs: [127.0.0.2/32]}",
			widened: "{cidrs: [127.0.0.0/8]}", taker: "{cidrs: [127.0.0.0/8]}"},
		{name: "spiffe", base: "{spiffe: spiffe://test.example/ns/jobs/sa/runner}", narrowed: "{spiffe: spiffe://test.example/ns/jobs/sa/other}",
			widened: `{spiffe: "spiffe://test.example/ns/jobs/*"}`, taker: `{spiffe: "spiffe://test.example/*"}`, bearer: "svid"},
		{name: "claims", base: `{claims: {iss: "https://k8s.test", sub: "system:serviceaccount:jobs:runner"}}`,
			narrowed: `{claims: {iss: "https://k8s.test", sub: "system:serviceaccount:jobs:other"}}`,
			widened:  `{claims: {iss: "https://k8s.test"}}`, taker: `{claims: {iss: "https://k8s.test"}}`, bearer: "jobs"},
		{name: "require", base: "{cidrs: [127.0.0.0/8], require: [jwt]}", narrowed: "{cidrs: [127.0.0.0/8], require: [jwt, mtls]}",
			widened: "{cidrs: [127.0.0.0/8]}", taker: "{require: [jwt]}", bearer: "jobs"},
		{name: "tokenreview", base: "{namespace: jobs, service_account: runner, require: [kubernetes]}",
			narrowed: "{namespace: jobs, service_account: other, require: [kubernetes]}",
			widened:  "{namespace: jobs, require: [kubernetes]}", taker: "{namespace: [jobs, batch]}", bearer: "reviewed"},
	} {
		for _, change := range []struct {
			name      string
			workloads string // the new workloads section; %s is local's base definition
			from      string // the new rules' from, when they name workloads
			ends      bool
			// anonymous: the connections now match no workload; named:
			// the named rules refuse their workload now.
			anonymous, named bool
		}{
			{"narrowed", "  local: " + kind.narrowed + "\n" + reidentifyOther, "[local, other]", true, true, true},
			{"removed", reidentifyOther, "[other]", true, true, true},
			{"renamed", "  local2: %s\n" + reidentifyOther, "[local2, other]", true, false, false},
			{"taken", "  wide: " + kind.taker + "\n  local: %s\n" + reidentifyOther, "[local, other]", true, false, true},
			{"unchanged", "  local: %s\n  other: {cidrs: [10.9.9.8/32]}\n", "[local, other]", false, false, false},
			{"widened", "  local: " + kind.widened + "\n" + reidentifyOther, "[local, other]", false, false, false},
		} {
			// The rules name the workloads (a workload that changes
			// is usually refused by them too), or admit any ("*": only
			// identifying again tells the workload changed).
			for _, rules := range []string{"named", "any"} {
				t.Run(kind.name+"/"+rules+"/"+change.name, func(t *testing.T) {
					// The next request on a kept-alive connection is
					// refused when its workload is now one the rules
					// do not admit.
					refused := change.anonymous || rules == "named" && change.named
					reidentifyCell(t, kind.base, kind.bearer, rules, change.workloads, change.from, change.ends, refused)
				})
			}
		}
	}
}

// reidentifyCell is one cell of TestReloadReidentifiesWhatIsOpen: local
// defined as base, its connections presenting bearer (a kind of token,
// or ""), rules naming workloads or any ("*"), then a reload to the
// workloads section workloads (%s: base) and, with named rules, rules
// from from. ends: what is open ends; refused: the next request on a
// kept-alive connection is refused no_rule (else admitted).
func reidentifyCell(t *testing.T, base, bearerKind, rules, workloads, from string, ends, refused bool) {
	start := rejudgeBase
	start.workloads = "  local: " + base + "\n" + reidentifyOther
	if rules == "any" {
		start.apiFrom, start.tunnelFrom = `"*"`, `"*"`
	}
	var (
		bearer  string
		reviews *atomic.Int64
	)
	tg, release := startRejudgeGateway(t, start, func(tg *testGateway) string {
		signer, pub := newSigner(t)
		writeFile(t, tg.dir, "jwks.json", jwksOf(t, jose.JSONWebKey{Key: pub, KeyID: "k1", Algorithm: "ES256", Use: "sig"}))
		var kube string
		kube, reviews = startTokenReview(t, tg)
		bearer = map[string]string{"jobs": jobsToken(t, signer, time.Now().Add(time.Hour)), "svid": svidToken(t, signer),
			"reviewed": reviewedToken, "": ""}[bearerKind]
		return `identity:
  jwt:
    issuers:
      - {issuer: "https://k8s.test", profile: kubernetes, audiences: [credgate], jwks_file: jwks.json}
      - {profile: spiffe, trust_domain: test.example, audiences: [credgate], jwks_file: jwks.json}
` + kube
	})
	open := openAll(t, tg, bearer)

	end := start
	end.workloads = strings.ReplaceAll(workloads, "%s", base)
	if rules == "named" {
		end.apiFrom, end.tunnelFrom = from, from
	}
	before := reviews.Load()
	reloadTo(t, tg, end)
	wantScanned(t, tg)
	if n := reviews.Load(); n != before {
		t.Errorf("the scan asked for %d TokenReviews; it identifies from the factors proved, verifying nothing again", n-before)
	}
	close(release)
	want := afterReload{tunnel: ends, rest: ends, cred: tg.token}
	if refused {
		want.cred, want.keep = "", "no_rule"
	}
	open.check(t, tg, want)
	if bearer != "" && strings.Contains(tg.logs.String()+tg.audit.String(), bearer) {
		t.Error("the workload's token appears in the log or audit output")
	}
}
