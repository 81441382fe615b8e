package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

// misbehavingInjector sets the bearer token, then does what the URL's
// last segment names: the bugs a plugin can have, or what a hostile one
// would try. Each one either changes what the policy matched or puts on
// the wire what the gateway never forwards.
type misbehavingInjector struct{}

func (misbehavingInjector) Headers() []string { return []string{"Authorization"} }

// misbehaviours maps the URL's last segment to what the injector does.
var misbehaviours = map[string]func(r *http.Request){
	"path":       func(r *http.Request) { r.URL.Path = "/admin/secret" },
	"raw-path":   func(r *http.Request) { r.URL.RawPath = "/misbehave/raw%2Dpath" },
	"proxy-auth": func(r *http.Request) { r.Header.Set("Proxy-Authorization", "Basic eA==") },
	"xff":        func(r *http.Request) { r.Header.Set("X-Forwarded-For", "10.0.0.1") },
	"credgate":   func(r *http.Request) { r.Header.Set("X-Credgate-Workload", "admin") },
	"connection": func(r *http.Request) { r.Header.Set("Connection", "Authorization") },
	"upgrade":    func(r *http.Request) { r.Header.Set("Upgrade", "h2c") },
	"crlf":       func(r *http.Request) { r.Header.Set("X-Note", "a\r\nX-Injected: 1") },
	"nul":        func(r *http.Request) { r.Header.Set("X-Note", "a\x00b") },
	"bad-name":   func(r *http.Request) { r.Header["X Bad"] = []string{"1"} },
	"huge":       func(r *http.Request) { r.Header.Set("X-Note", strings.Repeat("a", 8<<20)) },
	"added":      func(r *http.Request) { r.Header.Add("Authorization", "Bearer second") },
	"panic":      func(r *http.Request) { panic("bad token " + r.Header.Get("Authorization")) },
}

func (misbehavingInjector) Inject(r *http.Request, cred *providers.Credential) error {
	tok, _ := cred.Field(providers.FieldToken)
	r.Header.Set("Authorization", "Bearer "+tok.Reveal())
	if f := misbehaviours[r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]]; f != nil {
		f(r)
	}
	return nil
}

func init() {
	injectors.Register(injectors.Module{Name: "gwtest-misbehave", New: func() injectors.Injector { return misbehavingInjector{} }})
}

// TestMisbehavingInjectorContained checks, through the gateway, the class
// "whatever an injector does to the request that the policy did not
// decide is not forwarded": a path rewrite (invariant 11), a header
// reserved for the proxy (invariant 3), a value with CR/LF/NUL, an
// invalid name, a huge value, a second value, a panic. Each is answered 502 inject_failed, with an audit
// line and a log line saying what the injector did (never the value),
// and the origin receives nothing; a well-behaved request on the same
// rule still passes. Before, the path and reserved headers reached the
// origin, bad values were misreported as upstream_error ("the connection
// to ... failed"), and a panic cut the connection without an audit line.
func TestMisbehavingInjectorContained(t *testing.T) {
	tg := startInjectorGateway(t, "misbehave", "/misbehave/*", "gwtest-misbehave")
	for _, h2 := range []bool{false, true} {
		for kind := range misbehaviours {
			t.Run(fmt.Sprintf("h2=%v/%s", h2, kind), func(t *testing.T) {
				path := fmt.Sprintf("/misbehave/h2-%v/%s", h2, kind)
				req, _ := http.NewRequest(http.MethodGet, "https://"+apiHost+path, nil)
				req.Header.Set("X-Client", "client")
				resp, err := tg.client(t, h2).Do(req)
				if err != nil {
					t.Fatalf("the client got %v, want 502 inject_failed", err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), codeInjectFailed) {
					t.Errorf("got %s %q, want 502 %s", resp.Status, b, codeInjectFailed)
				}
				wantAudited(t, tg, path, http.StatusBadGateway, codeInjectFailed)
				for _, s := range tg.origin.all() {
					if strings.Contains(s.Path, kind) || s.Path == "/admin/secret" {
						t.Errorf("the origin received %s %s", s.Method, s.URI)
					}
				}
			})
		}
	}
	waitFor(t, 5*time.Second, "the injection failures' log lines", func() bool {
		return strings.Count(tg.logs.String(), "injection failed") >= 2*len(misbehaviours)
	})
	logs := tg.logs.String()
	for _, want := range []string{"X-Forwarded-For is reserved", "changed the path", "line break", "misbehavingInjector.Inject"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no log line says %q", want)
		}
	}
	for _, leak := range []string{"X-Injected", "aaaaaaaa", "Bearer second"} {
		if strings.Contains(logs, leak) {
			t.Errorf("the log shows a value the injector set (%q)", leak)
		}
	}
	resp, err := tg.client(t, false).Get("https://" + apiHost + "/misbehave/fine")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a well-behaved injection: %s", resp.Status)
	}
}
