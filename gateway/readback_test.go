package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// readbackPolicy: the agent may store its placeholder's value (in a JSON
// body, a header, a query) through rule store, and read what it stored
// through rules injecting another credential, on the same destination
// and on another one, scrubbing or not.
const readbackPolicy = `
workloads:
  local: {cidrs: [127.0.0.1/32]}
destinations:
  api: {hosts: [api.origin.test], allow_private: true}
  second: {hosts: [second.origin.test], allow_private: true}
credentials:
  stored:
    provider: static
    env: CREDGATE_READBACK_STORED
    placeholder: CREDGATE_PH_stored
  other:
    provider: static
    env: CREDGATE_READBACK_OTHER
rules:
  - {name: store, from: local, to: api, paths: [/store], inject: {credential: stored, as: placeholder, substitute_in: [header, query, json]}%s}
  - {name: read-same, from: local, to: api, paths: [/read], inject: {credential: other, as: bearer}}
  - {name: read-second, from: local, to: second, paths: [/read], inject: {credential: other, as: bearer}}
  - {name: read-gzip, from: local, to: api, paths: [/readgz], inject: {credential: other, as: bearer}, scrub: {encoded: decode}}
default: deny
`

// TestStoredSecretReadBackThroughAnotherRule: a value substituted into a
// request the upstream keeps (a gist, an issue, a request-bin) is the
// gateway's secret wherever it comes back: read back through a rule that
// injects another credential, on the same destination or another, in
// every form the scrubber knows, the client never sees it, whether the
// storing rule scrubs its own responses or not. Before, a response was
// scrubbed of its own rule's credential only, so an agent stored the
// secret through one rule and read it through another.
func TestStoredSecretReadBackThroughAnotherRule(t *testing.T) {
	for name, store := range map[string]string{"store-scrubs": "", "store-unscrubbed": ", scrub: {enabled: false}"} {
		t.Run(name, func(t *testing.T) { testReadBack(t, store) })
	}
}

func testReadBack(t *testing.T, storeScrub string) {
	t.Setenv("CREDGATE_READBACK_STORED", scrubSecret)
	t.Setenv("CREDGATE_READBACK_OTHER", "readback-other-credential-value")
	pki := newTestPKI(t, apiHost, secondHost)
	o := startOrigin(t, pki)
	var mu sync.Mutex
	var kept []string
	o.route("/store", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		kept = append(kept, string(b), r.Header.Get("X-Note"), r.URL.RawQuery)
		mu.Unlock()
		fmt.Fprint(w, "stored")
	})
	read := func(w http.ResponseWriter, r *http.Request) {
		form := r.URL.Query().Get("form")
		mu.Lock()
		all := strings.Join(kept, "\n")
		mu.Unlock()
		w.Header().Set("X-Stored", scrubForms()[form])
		fmt.Fprintf(w, "%s\n%s\n", all, scrubForms()[form])
	}
	o.route("/read", read)
	o.route("/readgz", read)
	tg := newTestGateway(t, pki, o)
	writeFile(t, tg.dir, "policy.yaml", []byte(fmt.Sprintf(readbackPolicy, storeScrub)))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n  \"second.origin.test:443\": %q\n", o.addr, o.addr))
	t.Cleanup(func() {
		if l := leaks(tg.audit.String() + tg.logs.String()); len(l) > 0 {
			t.Errorf("the audit or log output holds the secret as %v", l)
		}
	})
	for _, h2 := range []bool{false, true} {
		c := tg.client(t, h2)
		req, _ := http.NewRequest(http.MethodPost, "https://"+apiHost+"/store?note=CREDGATE_PH_stored",
			strings.NewReader(`{"content":"CREDGATE_PH_stored"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Note", "CREDGATE_PH_stored")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("store: %s", resp.Status)
		}
		mu.Lock()
		stored := strings.Join(kept, "\n")
		mu.Unlock()
		if !strings.Contains(stored, "sk_live") {
			t.Fatalf("the origin did not get the secret substituted: %q", stored)
		}
		for form := range scrubForms() {
			for _, u := range []string{"https://" + apiHost + "/read", "https://" + secondHost + "/read", "https://" + apiHost + "/readgz"} {
				t.Run(fmt.Sprintf("h2=%v/%s/%s", h2, form, u), func(t *testing.T) {
					status, all := getScrubbedURL(t, c, u+"?form="+form)
					if status != http.StatusOK {
						t.Fatalf("status %d", status)
					}
					if l := leaks(all); len(l) > 0 {
						t.Errorf("the client read the stored secret back as %v", l)
					}
				})
			}
		}
	}
}

// getScrubbedURL is getScrubbed for a full URL.
func getScrubbedURL(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	_ = resp.Header.Write(&all)
	all.Write(body)
	return resp.StatusCode, all.String()
}
