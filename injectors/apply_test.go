package injectors

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/credgate/credgate/providers"
)

// TestApplyReplacesClientHeaders: Apply removes every client copy of the
// headers an injector declares before injecting, so no client value
// survives beside the credential.
func TestApplyReplacesClientHeaders(t *testing.T) {
	inj := &Header{Name: "X-Api-Key"}
	if err := inj.Provision(); err != nil {
		t.Fatal(err)
	}
	r, _ := http.NewRequest(http.MethodGet, "https://api.example/", nil)
	r.Header["X-Api-Key"] = []string{"client-1", "client-2"}
	cred := &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret("real")}}
	if err := Apply(inj, r, cred); err != nil {
		t.Fatal(err)
	}
	if got := r.Header["X-Api-Key"]; len(got) != 1 || got[0] != "real" {
		t.Errorf("X-Api-Key = %q, want only the injected value", got)
	}
	if !Replayable(inj) {
		t.Error("a header injector is replayable")
	}
	if Replayable(&TLSClient{}) {
		t.Error("a client-certificate injector is not replayable")
	}
	if c, err := ClientCertificateOf(inj, cred); c != nil || err != nil {
		t.Errorf("ClientCertificateOf(header) = %v, %v", c, err)
	}
}

// TestApplyReplacesCGISpellings: for an injected name with '_', the
// client's fields that CGI-style servers read as the same name (any
// case, '-' for '_') are removed too, so no client value reaches such a
// server beside the credential as HTTP_API_KEY.
func TestApplyReplacesCGISpellings(t *testing.T) {
	inj := &Header{Name: "api_key"}
	if err := inj.Provision(); err != nil {
		t.Fatal(err)
	}
	r, _ := http.NewRequest(http.MethodGet, "https://api.example/", nil)
	for _, k := range []string{"Api-Key", "API-KEY", "api-key", "Api_key", "Api-Key-2", "Apikey"} {
		r.Header[k] = []string{"client"}
	}
	cred := &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret("real")}}
	if err := Apply(inj, r, cred); err != nil {
		t.Fatal(err)
	}
	want := http.Header{"Api_key": {"real"}, "Api-Key-2": {"client"}, "Apikey": {"client"}}
	if len(r.Header) != len(want) {
		t.Fatalf("headers %v, want %v", r.Header, want)
	}
	for k, v := range want {
		if got := r.Header[k]; len(got) != 1 || got[0] != v[0] {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

// mutator is an injector that changes the request with f: a plugin's bug,
// or one that builds the URL from a credential field (an instance URL).
type mutator func(*http.Request)

func (m mutator) Inject(r *http.Request, _ *providers.Credential) error { m(r); return nil }

// placeholderMutator is a mutator that declares the path placeholder
// "-" (injectors.PathPlaceholder), as twilio does.
type placeholderMutator struct{ mutator }

func (placeholderMutator) PathPlaceholder() string { return "-" }

// declaringMutator is a mutator that declares the headers it sets.
type declaringMutator struct {
	mutator
	names []string
}

func (d declaringMutator) Headers() []string { return d.names }

// TestApplyKeepsTheDestination checks the class "an injector cannot send
// the credential elsewhere or do something else with it than the policy
// decided": whatever an injector changes among the method, the URL's
// scheme, host and userinfo, the Host field and the path the policy
// matched (invariant 11), ApplyFor fails with ErrDestinationChanged (the
// gateway forwards nothing); what injectors legitimately change (headers,
// the query, a declared placeholder segment of the path, written with one
// plain segment) passes.
func TestApplyKeepsTheDestination(t *testing.T) {
	cred := &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret("real")}}
	plain := func(f func(*http.Request)) Injector { return mutator(f) }
	ph := func(f func(*http.Request)) Injector { return placeholderMutator{mutator(f)} }
	setPath := func(p, raw string) func(*http.Request) {
		return func(r *http.Request) { r.URL.Path, r.URL.RawPath = p, raw }
	}
	tests := []struct {
		name    string
		path    string // the request's path; default /v1
		inj     Injector
		changed bool
	}{
		{"url-host", "", plain(func(r *http.Request) { r.URL.Host = "evil.example" }), true},
		{"url-port", "", plain(func(r *http.Request) { r.URL.Host = "api.example:8443" }), true},
		{"host-field", "", plain(func(r *http.Request) { r.Host = "evil.example" }), true},
		{"scheme", "", plain(func(r *http.Request) { r.URL.Scheme = "http" }), true},
		{"method", "", plain(func(r *http.Request) { r.Method = http.MethodDelete }), true},
		{"userinfo", "", plain(func(r *http.Request) { r.URL.User = url.UserPassword("u", "p") }), true},
		{"opaque", "", plain(func(r *http.Request) { r.URL.Opaque = "//evil.example/x" }), true},
		{"whole-url", "", plain(func(r *http.Request) { r.URL, _ = url.Parse("https://evil.example/v1") }), true},
		{"same-url-rebuilt", "", plain(func(r *http.Request) { r.URL, _ = url.Parse(r.URL.String()) }), false},
		{"header", "", plain(func(r *http.Request) { r.Header.Set("Authorization", "Bearer real") }), false},
		{"query", "", plain(func(r *http.Request) { r.URL.RawQuery = "key=real" }), false},
		// The path the policy matched.
		{"path", "", plain(setPath("/v1/real/x", "")), true},
		{"path-other-resource", "", plain(setPath("/admin", "")), true},
		{"path-same-length", "", plain(setPath("/v2", "")), true},
		{"raw-path-only", "/v1/a%2Fb", plain(func(r *http.Request) { r.URL.RawPath = "/v1/a%252Fb" }), true},
		{"raw-path-dropped", "/v1/a%2Fb", plain(func(r *http.Request) { r.URL.RawPath = "" }), true},
		{"placeholder-undeclared", "/Accounts/-/x", plain(setPath("/Accounts/AC1/x", "")), true},
		{"placeholder", "/Accounts/-/x", ph(setPath("/Accounts/AC1/x", "")), false},
		{"placeholder-ext", "/Accounts/-.json", ph(setPath("/Accounts/AC1.json", "")), false},
		{"placeholder-ext-dropped", "/Accounts/-.json", ph(setPath("/Accounts/AC1", "")), true},
		{"placeholder-other-segment", "/Accounts/-/x", ph(setPath("/Accounts/-/y", "")), true},
		{"placeholder-slash", "/Accounts/-/x", ph(setPath("/Accounts/a/b/x", "")), true},
		{"placeholder-encoded-slash", "/Accounts/-/x", ph(setPath("/Accounts/a/b/x", "/Accounts/a%2Fb/x")), true},
		{"placeholder-dotdot", "/Accounts/-/x", ph(setPath("/Accounts/../x", "")), true},
		{"placeholder-dot", "/Accounts/-/x", ph(setPath("/Accounts/./x", "")), true},
		{"placeholder-empty", "/Accounts/-/x", ph(setPath("/Accounts//x", "")), true},
		{"placeholder-semicolon", "/Accounts/-/x", ph(setPath("/Accounts/a;b=c/x", "")), true},
		{"placeholder-percent", "/Accounts/-/x", ph(setPath("/Accounts/a%zz/x", "")), true},
		{"placeholder-backslash", "/Accounts/-/x", ph(setPath(`/Accounts/a\b/x`, "")), true},
		{"placeholder-extra-segment", "/Accounts/-/x", ph(setPath("/Accounts/AC1/x/y", "")), true},
		{"placeholder-prefix-only", "/Accounts/-x/y", ph(setPath("/Accounts/AC1x/y", "")), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "https://api.example"+cmpOr(tt.path, "/v1"), nil)
			err := Apply(tt.inj, r, cred)
			if got := errors.Is(err, ErrDestinationChanged); got != tt.changed {
				t.Errorf("Apply = %v; ErrDestinationChanged %v, want %v", err, got, tt.changed)
			}
			if err != nil && strings.Contains(err.Error(), "real") {
				t.Errorf("the error names the credential: %v", err)
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestApplyContainsHeaders checks the class "an injector cannot put on
// the request a header the gateway would not forward": a field reserved
// for the proxy (framing, hop-by-hop, Proxy-Authorization, X-Forwarded-*,
// X-Credgate-*, in any spelling of its name), an invalid name, a value
// with CR, LF, NUL or another control character, several values (an Add
// beside the client's value or its own), more than
// MaxInjectedHeaderBytes: ApplyFor fails with ErrHeaderRefused, naming
// the header and never its value. What injectors legitimately do passes,
// and so does a field the request already had, untouched (Te: trailers,
// kept for the upstream before injection).
func TestApplyContainsHeaders(t *testing.T) {
	cred := &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret("real-secret")}}
	set := func(k, v string) func(*http.Request) { return func(r *http.Request) { r.Header[k] = []string{v} } }
	dm := func(f func(*http.Request), names ...string) Injector { return declaringMutator{mutator(f), names} }
	tests := []struct {
		name    string
		inj     Injector
		refused bool
	}{
		{"declared", dm(set("Authorization", "Bearer real-secret"), "Authorization"), false},
		{"new-undeclared-default", dm(set("X-Ms-Version", "2025-05-05"), "Authorization"), false},
		{"new-undeclaring-injector", mutator(set("X-Api-Key", "real-secret")), false},
		{"body-length-corrected", mutator(func(r *http.Request) { SetBody(r, []byte("abc")) }), false},
		{"client-field-moved-to-canonical-key", mutator(func(r *http.Request) {
			r.Header["X-Client"] = r.Header["x-client"]
			delete(r.Header, "x-client")
		}), false},
		{"proxy-authorization", mutator(set("Proxy-Authorization", "Basic eA==")), true},
		{"proxy-authorization-lower-key", mutator(set("proxy-authorization", "Basic eA==")), true},
		{"x-forwarded-for", mutator(set("X-Forwarded-For", "10.0.0.1")), true},
		{"forwarded", mutator(set("Forwarded", "for=10.0.0.1")), true},
		{"x-client-cert", mutator(set("X-Client-Cert", "x")), true},
		{"x-credgate", dm(set("X-Credgate-Workload", "admin"), "X-Credgate-Workload"), true},
		{"connection", mutator(set("Connection", "Authorization")), true},
		{"transfer-encoding", mutator(set("Transfer-Encoding", "chunked")), true},
		{"te", mutator(set("Te", "gzip")), true},
		{"upgrade", mutator(set("Upgrade", "h2c")), true},
		{"keep-alive", mutator(set("Keep-Alive", "timeout=5")), true},
		{"trailer", mutator(set("Trailer", "X-Sum")), true},
		{"host", mutator(set("Host", "evil.example")), true},
		{"content-length-wrong", mutator(set("Content-Length", "5")), true},
		{"invalid-name", mutator(set("X Bad", "1")), true},
		{"invalid-name-colon", mutator(set("X-Bad:", "1")), true},
		{"cr-lf", mutator(set("X-Note", "a\r\nX-Injected: 1")), true},
		{"lf", mutator(set("X-Note", "a\nb")), true},
		{"nul", mutator(set("X-Note", "a\x00b")), true},
		{"del", mutator(set("X-Note", "a\x7fb")), true},
		{"huge", mutator(set("X-Note", strings.Repeat("a", MaxInjectedHeaderBytes))), true},
		{"many-fields", mutator(func(r *http.Request) {
			for i := range 1 + MaxInjectedHeaderBytes/1000 {
				r.Header.Set(fmt.Sprintf("X-Note-%d", i), strings.Repeat("a", 1000))
			}
		}), true},
		{"added-twice", dm(func(r *http.Request) { r.Header.Add("Authorization", "a"); r.Header.Add("Authorization", "b") }, "Authorization"), true},
		{"appended-to-client", mutator(func(r *http.Request) { r.Header.Add("X-Client", "real-secret") }), true},
		// A field the client sent, rewritten or removed by an injector
		// that reads it (sigv4's X-Amz-Content-Sha256): what goes on
		// the wire is checked, not the declaration.
		{"client-field-rewritten", dm(set("X-Client", "CLIENT VALUE"), "Authorization"), false},
		{"client-field-removed", mutator(func(r *http.Request) { r.Header.Del("X-Client") }), false},
		{"client-field-changed-in-place-to-bad", mutator(func(r *http.Request) { r.Header["X-Client"][0] = "a\r\nb" }), true},
		{"client-reserved-kept", mutator(func(*http.Request) {}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodPost, "https://api.example/v1", strings.NewReader("body"))
			r.Header["Content-Length"] = []string{"4"}
			r.Header["X-Client"] = []string{"client value"}
			r.Header["Te"] = []string{"trailers"}
			if tt.name == "client-field-moved-to-canonical-key" {
				delete(r.Header, "X-Client")
				r.Header["x-client"] = []string{"client value"}
			}
			err := Apply(tt.inj, r, cred)
			if got := errors.Is(err, ErrHeaderRefused); got != tt.refused {
				t.Errorf("Apply = %v; ErrHeaderRefused %v, want %v", err, got, tt.refused)
			}
			if err != nil && strings.Contains(err.Error(), "real-secret") {
				t.Errorf("the error names the credential: %v", err)
			}
		})
	}
}

// TestApplyContainsPanics: an injector that panics, with whatever
// value, fails ApplyFor with ErrInjectorPanicked naming where and the
// value's type, never the value; the gateway then answers 502 with an
// audit line instead of cutting the connection.
func TestApplyContainsPanics(t *testing.T) {
	cred := &providers.Credential{Fields: map[string]providers.Secret{providers.FieldToken: providers.NewSecret("real-secret")}}
	for _, p := range []any{"bad token real-secret", fmt.Errorf("token %s", "real-secret"), struct{ T string }{"real-secret"}} {
		err := Apply(mutator(func(*http.Request) { panic(p) }), httptestRequest(), cred)
		if !errors.Is(err, ErrInjectorPanicked) || strings.Contains(err.Error(), "real-secret") || !strings.Contains(err.Error(), "TestApplyContainsPanics") {
			t.Errorf("panic(%T): Apply = %v", p, err)
		}
	}
	err := Apply(mutator(func(r *http.Request) {
		var s []string
		_ = s[len(r.Method)] // index out of range
	}), httptestRequest(), cred)
	if !errors.Is(err, ErrInjectorPanicked) || !strings.Contains(err.Error(), "index out of range") {
		t.Errorf("runtime error: Apply = %v", err)
	}
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler passed on", p)
			}
		}()
		_ = Apply(mutator(func(*http.Request) { panic(http.ErrAbortHandler) }), httptestRequest(), cred)
	}()
}

func httptestRequest() *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "https://api.example/v1", nil)
	return r
}
