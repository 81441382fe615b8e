package providertest

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/providers"
)

// hostileDeadline is the context deadline of each hostile fetch, and
// hostileGrace how much longer Fetch may take to return after it.
const (
	hostileDeadline = 2 * time.Second
	hostileGrace    = 2 * time.Second
	// hostileAlloc bounds what one hostile fetch may allocate: an endless
	// answer is read to a bound (a megabyte or so), not for as long as the
	// endpoint keeps sending.
	hostileAlloc = 64 << 20
)

// sensitiveForm are the request form and JSON fields whose values are the
// provider's own secrets (a client secret, a signed assertion, a subject
// or refresh token, a Vault login's secret): what an endpoint that echoes
// its request could get quoted back in an error.
var sensitiveForm = []string{
	"client_secret", "client_assertion", "assertion", "subject_token", "actor_token",
	"refresh_token", "WebIdentityToken", "password", "secret_id", "jwt", "token", "code",
}

// sensitiveHeaders carry a secret of the provider in their value.
var sensitiveHeaders = []string{"Authorization", "X-Vault-Token", "X-Amz-Security-Token"}

// hostileCase is one broken or hostile answer of a credential endpoint.
type hostileCase struct {
	name string
	// serve answers r; elsewhere is the URL of a second server that must
	// never be contacted; dump is what the provider sent (headers and
	// body), for an endpoint that echoes it.
	serve func(w http.ResponseWriter, r *http.Request, elsewhere, dump string)
	// bigAlloc: the case sends without end, and the allocation bound
	// applies.
	bigAlloc bool
}

func redirectCase(status int) hostileCase {
	return hostileCase{name: fmt.Sprintf("redirect-%d-to-another-host", status), serve: func(w http.ResponseWriter, r *http.Request, elsewhere, _ string) {
		w.Header().Set("Location", elsewhere+r.URL.RequestURI())
		w.WriteHeader(status)
	}}
}

// echoCase answers status with the request echoed in the shape a
// provider's service uses for its errors (OAuth2 and Vault JSON, STS XML),
// so that a provider quoting the answer would quote the secrets sent.
func echoCase(status int) hostileCase {
	return hostileCase{name: fmt.Sprintf("echo-request-in-%d", status), serve: func(w http.ResponseWriter, r *http.Request, _, dump string) {
		if r.Form.Get("Action") != "" { // AWS query protocol: STS
			var b bytes.Buffer
			b.WriteString("<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>")
			_ = xml.EscapeText(&b, []byte(dump))
			b.WriteString("</Message></Error><RequestId>r</RequestId></ErrorResponse>")
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(status)
			_, _ = w.Write(b.Bytes())
			return
		}
		body, _ := json.Marshal(map[string]any{
			"error": "invalid_request", "error_description": dump, "message": dump,
			"errors": []string{dump}, "error_codes": []int{1},
		})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}}
}

// endless sends head, then filler until the client goes away.
func endless(status int, contentType, head string, filler byte) func(w http.ResponseWriter, r *http.Request, _, _ string) {
	return func(w http.ResponseWriter, r *http.Request, _, _ string) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		if _, err := io.WriteString(w, head); err != nil {
			return
		}
		chunk := bytes.Repeat([]byte{filler}, 32<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
}

// slow sends head, then one byte of filler every 50ms until the client
// goes away.
func slow(contentType, head string) func(w http.ResponseWriter, r *http.Request, _, _ string) {
	return func(w http.ResponseWriter, r *http.Request, _, _ string) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, head)
		rc := http.NewResponseController(w)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				if _, err := w.Write([]byte{'a'}); err != nil {
					return
				}
				_ = rc.Flush()
			}
		}
	}
}

func fixed(status int, contentType, body string) func(w http.ResponseWriter, r *http.Request, _, _ string) {
	return func(w http.ResponseWriter, _ *http.Request, _, _ string) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

const (
	jsonHead = `{"access_token":"`
	xmlHead  = `<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><SessionToken>`
)

// hostileCases are the answers checkHostile serves.
var hostileCases = []hostileCase{
	redirectCase(http.StatusMovedPermanently),
	redirectCase(http.StatusFound),
	redirectCase(http.StatusSeeOther),
	redirectCase(http.StatusTemporaryRedirect),
	redirectCase(http.StatusPermanentRedirect),
	{name: "endless-json-200", serve: endless(http.StatusOK, "application/json", jsonHead, 'a'), bigAlloc: true},
	{name: "endless-xml-200", serve: endless(http.StatusOK, "text/xml", xmlHead, 'a'), bigAlloc: true},
	{name: "endless-whitespace-200", serve: endless(http.StatusOK, "application/json", "", ' '), bigAlloc: true},
	{name: "endless-json-400", serve: endless(http.StatusBadRequest, "application/json", `{"error":"`, 'a'), bigAlloc: true},
	{name: "endless-xml-403", serve: endless(http.StatusForbidden, "text/xml", `<ErrorResponse><Error><Message>`, 'a'), bigAlloc: true},
	{name: "endless-500", serve: endless(http.StatusInternalServerError, "text/plain", "", 'a'), bigAlloc: true},
	{name: "slow-json-body", serve: slow("application/json", jsonHead)},
	{name: "slow-xml-body", serve: slow("text/xml", xmlHead)},
	{name: "truncated-json", serve: fixed(http.StatusOK, "application/json", `{"access_token":"abcdefgh","token":"abcdefgh","expires_in":3600,`)},
	{name: "html-200", serve: fixed(http.StatusOK, "text/html", "<html><body>Sign in to continue</body></html>")},
	{name: "empty-200", serve: fixed(http.StatusOK, "application/json", "")},
	{name: "json-null", serve: fixed(http.StatusOK, "application/json", "null")},
	{name: "json-wrong-types", serve: fixed(http.StatusOK, "application/json", `{"access_token":7,"token":[1],"expires_in":"soon","data":"x","auth":1,"expires_at":false}`)},
	// A complete-looking credential whose stated lifetime is over on
	// arrival (every provider's lifetime field at once): refused, never
	// kept for a default period (see checkLifetime).
	{name: "json-lifetime-zero", serve: fixed(http.StatusOK, "application/json", lifetimeBody("0", `"0"`, `"1970-01-01T00:00:00Z"`))},
	{name: "json-lifetime-negative", serve: fixed(http.StatusOK, "application/json", lifetimeBody("-3600", `"1000000000"`, `"2001-09-09T01:46:40Z"`))},
	{name: "json-lifetime-not-a-number", serve: fixed(http.StatusOK, "application/json", lifetimeBody(`"soon"`, `"soon"`, `"soon"`))},
	echoCase(http.StatusBadRequest),
	echoCase(http.StatusUnauthorized),
	echoCase(http.StatusForbidden),
	echoCase(http.StatusInternalServerError),
	echoCase(http.StatusOK),
}

// lifetimeBody is a 200 answer with a token in every provider's field
// (access_token, token, Slack's ok and refresh_token, STS-less JSON) and
// the lifetime given in each provider's lifetime field: seconds for
// expires_in and lease_duration, on for expires_on (epoch seconds), at
// for expires_at and expireTime.
func lifetimeBody(seconds, on, at string) string {
	return `{"ok":true,"access_token":"hostile-token-abcdefgh","accessToken":"hostile-token-abcdefgh","token":"hostile-token-abcdefgh",` +
		`"refresh_token":"xoxe-1-hostile-abcdefgh","token_type":"Bearer","expires_in":` + seconds + `,"expires_on":` + on +
		`,"expires_at":` + at + `,"expireTime":` + at + `,"lease_id":"hostile/lease","lease_duration":` + seconds +
		`,"data":{"token":"hostile-token-abcdefgh"}}`
}

// recorder is a server that notes every request it gets.
type recorder struct {
	mu   sync.Mutex
	seen []string
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	rc.mu.Lock()
	rc.seen = append(rc.seen, r.Method+" "+r.URL.RequestURI()+" "+string(body))
	rc.mu.Unlock()
	w.WriteHeader(http.StatusInternalServerError)
}

func (rc *recorder) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.seen)
}

// checkHostile points the provider (Stalled's settings, with a plain
// http:// loopback URL) at an endpoint that answers each hostileCase, and
// checks what every provider must do with a broken or hostile endpoint:
// Fetch fails (no credential comes of it), within hostileGrace of its
// context's deadline, allocating at most hostileAlloc; a redirect is not
// followed (a second server is never contacted, so nothing the provider
// sends reaches it); and the error holds none of the secrets the provider
// sent (c.Secrets, sensitive headers and form fields), even when the
// endpoint echoes them.
func checkHostile(t *testing.T, c Conformance) {
	for _, hc := range hostileCases {
		t.Run(hc.name, func(t *testing.T) {
			elsewhere := &recorder{}
			other := httptest.NewServer(elsewhere)
			t.Cleanup(other.Close)

			var mu sync.Mutex
			secrets := append([]string(nil), c.Secrets...)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
				r.Body = io.NopCloser(bytes.NewReader(raw))
				_ = r.ParseForm()
				found := sentSecrets(r, raw)
				mu.Lock()
				secrets = append(secrets, found...)
				mu.Unlock()
				var dump strings.Builder
				fmt.Fprintf(&dump, "%s %s\n", r.Method, r.URL.RequestURI())
				_ = r.Header.Write(&dump)
				dump.WriteString("\n")
				dump.Write(raw)
				hc.serve(w, r, other.URL, dump.String())
			}))
			t.Cleanup(srv.Close)

			p := load(t, c, c.Stalled(srv.URL))
			ctx, cancel := context.WithTimeout(t.Context(), hostileDeadline)
			defer cancel()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			cred, err := p.Fetch(ctx, c.Request)
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			srv.CloseClientConnections()

			if took > hostileDeadline+hostileGrace {
				t.Errorf("Fetch took %v, more than %v after its context's deadline", took.Round(time.Millisecond), hostileGrace)
			}
			if hc.bigAlloc {
				if n := after.TotalAlloc - before.TotalAlloc; n > hostileAlloc {
					t.Errorf("Fetch allocated %d MiB reading an endless answer, want at most %d MiB (read a bounded amount)", n>>20, hostileAlloc>>20)
				}
			}
			if n := elsewhere.count(); n > 0 {
				t.Errorf("the provider followed the redirect: another host got %d request(s) (what it sent went there)", n)
			}
			if err == nil {
				t.Fatalf("Fetch succeeded against a broken endpoint (fields %v)", fieldNames(cred))
			}
			if cred != nil {
				t.Errorf("Fetch returned a credential with its error")
			}
			msg := err.Error()
			if strings.TrimSpace(msg) == "" {
				t.Errorf("the error is empty")
			}
			if len(msg) > 4<<10 {
				t.Errorf("the error is %d bytes long, want a bounded message (quote at most a short part of an answer)", len(msg))
			}
			printed := fmt.Sprintf("%v %+v", err, err)
			mu.Lock()
			defer mu.Unlock()
			for _, s := range secrets {
				if strings.Contains(printed, s) {
					t.Errorf("the error contains a secret the provider sent (%d bytes): %.2000s", len(s), redactIn(printed, s))
				}
			}
		})
	}
}

// sentSecrets returns the secret values r carries: sensitive headers
// (without their scheme) and form or JSON fields, 8 bytes or longer.
func sentSecrets(r *http.Request, body []byte) []string {
	var out []string
	add := func(v string) {
		if len(v) >= 8 {
			out = append(out, v)
		}
	}
	for _, h := range sensitiveHeaders {
		for _, v := range r.Header.Values(h) {
			if _, cred, ok := strings.Cut(v, " "); ok && h == "Authorization" {
				add(cred)
				continue
			}
			add(v)
		}
	}
	form, _ := url.ParseQuery(string(body))
	var js map[string]any
	_ = json.Unmarshal(body, &js)
	for _, k := range sensitiveForm {
		add(form.Get(k))
		if s, ok := js[k].(string); ok {
			add(s)
		}
	}
	return out
}

func fieldNames(c *providers.Credential) []string {
	if c == nil {
		return nil
	}
	var names []string
	for k := range c.Fields {
		names = append(names, k)
	}
	return names
}

// redactIn returns s with secret replaced, for a failure message.
func redactIn(s, secret string) string { return strings.ReplaceAll(s, secret, "[SECRET]") }
