package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

// panicInjector panics while injecting, with a value built from the
// credential as the URL's last segment says: a third-party injector's
// bug, or one that formats what it was given into its panic.
type panicInjector struct{}

func (panicInjector) Inject(r *http.Request, cred *providers.Credential) error {
	tok, _ := cred.Field(providers.FieldToken)
	v := tok.Reveal()
	switch r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:] {
	case "string":
		panic("bad token " + v)
	case "error":
		panic(fmt.Errorf("injecting %q: %w", v, errors.New("refused")))
	case "struct":
		panic(struct{ Token string }{v})
	case "runtime":
		var s []string
		_ = s[len(v)] // index out of range
	}
	return nil
}

func init() {
	injectors.Register(injectors.Module{Name: "gwtest-panic", New: func() injectors.Injector { return panicInjector{} }})
}

// TestPanicValueNotLogged checks the class "a panic in a plugin never
// puts a secret in the log": whatever value an injector panics with (a
// string, an error, a struct holding the credential), the gateway logs
// where it happened and its type, never the value (a Go runtime error's
// message, which holds no data, is kept), on HTTP/1.1 and HTTP/2. The
// panic is contained by injectors.ApplyFor: the client is answered 502
// inject_failed and the request has its audit line (before, the
// connection or stream was cut and no audit line was written).
func TestPanicValueNotLogged(t *testing.T) {
	tg := startInjectorGateway(t, "panics", "/panic/*", "gwtest-panic")
	for _, h2 := range []bool{false, true} {
		for _, kind := range []string{"string", "error", "struct", "runtime"} {
			t.Run(fmt.Sprintf("h2=%v/%s", h2, kind), func(t *testing.T) {
				start := len(tg.logs.String())
				path := fmt.Sprintf("/panic/h2-%v/%s", h2, kind)
				resp, err := tg.client(t, h2).Get("https://" + apiHost + path)
				if err != nil {
					t.Fatalf("the client got %v, want 502 %s", err, codeInjectFailed)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadGateway {
					t.Errorf("the client got %s, want 502 %s", resp.Status, codeInjectFailed)
				}
				wantAudited(t, tg, path, http.StatusBadGateway, codeInjectFailed)
				waitFor(t, 5*time.Second, "the panic's log line", func() bool { return strings.Contains(tg.logs.String()[start:], "panic") })
				logs := tg.logs.String()[start:]
				if strings.Contains(logs, tg.token) {
					t.Fatalf("the log holds the credential:\n%s", logs)
				}
				if kind == "runtime" && !strings.Contains(logs, "index out of range") {
					t.Errorf("a runtime error's message is not logged:\n%s", logs)
				}
				if testing.Verbose() {
					t.Log(logs)
				}
				if !strings.Contains(logs, "panicInjector.Inject") {
					t.Errorf("the log does not say where the panic happened:\n%s", logs)
				}
			})
		}
	}
}

// startInjectorGateway runs the test gateway with one more rule, name,
// injecting the test credential with the injector as (a test plugin) on
// the paths under prefix of apiHost.
func startInjectorGateway(t *testing.T, name, prefix, as string) *testGateway {
	t.Helper()
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	rule := fmt.Sprintf("  - name: %s\n    from: local\n    to: api\n    paths: [%s]\n    inject: {credential: token, as: %s}\n", name, prefix, as)
	writeFile(t, tg.dir, "policy.yaml", []byte(strings.Replace(testPolicy, "rules:\n", "rules:\n"+rule, 1)))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n  \"tunnel.origin.test:443\": %q\n", tg.origin.addr, tg.origin.addr))
	return tg
}
