package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/policy"
	"github.com/credgate/credgate/providers"
)

func TestJSONSpans(t *testing.T) {
	for _, tc := range []struct {
		name  string
		body  string
		paths [][]string
		want  []string
	}{
		{"top", `{"token": "a", "other": "b"}`, [][]string{{"token"}}, []string{`"a"`}},
		{"nested", `{"session":{"token":"x\"y","n":1},"token":"top"}`, [][]string{{"session", "token"}}, []string{`"x\"y"`}},
		{"array on the way", `{"items":[{"t":"1"},{"t":"2"},{"u":"3"}]}`, [][]string{{"items", "t"}}, []string{`"1"`, `"2"`}},
		{"not a string", `{"token": 42, "obj": {"token": "in"}}`, [][]string{{"token"}}, nil},
		{"two paths", `{"a":"1","b":{"c":"2"}}`, [][]string{{"a"}, {"b", "c"}}, []string{`"1"`, `"2"`}},
		{"keys that look like values", `{"token":"token","x":["token"]}`, [][]string{{"token"}}, []string{`"token"`}},
		{"whitespace", "{ \"token\" :\n  \"v\" }", [][]string{{"token"}}, []string{`"v"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spans, err := jsonSpans([]byte(tc.body), tc.paths)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range spans {
				got = append(got, tc.body[s.start:s.end])
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("spans (-want +got):\n%s", diff)
			}
		})
	}
	for _, bad := range []string{`{"token": "a"`, `{"token" "a"}`, `]`} {
		if _, err := jsonSpans([]byte(bad), [][]string{{"token"}}); err == nil {
			t.Errorf("jsonSpans(%q): no error", bad)
		}
	}
}

// custodyGateway is a gateway with only a credential cache, for custody's
// parts.
func custodyGateway(t *testing.T) *Gateway {
	c := providers.NewCache(providers.CacheOptions{})
	t.Cleanup(c.Close)
	return &Gateway{cache: c}
}

// TestCustodyCaptureAndResolve: a custodied cookie keeps its attributes,
// its value expires at Max-Age when that is before the ttl, a JSON field
// is replaced in place, and a placeholder resolves only for its workload
// and destination.
func TestCustodyCaptureAndResolve(t *testing.T) {
	g := custodyGateway(t)
	now := time.Now()
	cc := &custodyCapture{g: g, ctx: context.Background(), workload: "agent", destination: "crm", now: func() time.Time { return now },
		c: &policy.Custody{JSON: [][]string{{"session", "token"}}, Cookies: []string{"sid"}, TTL: time.Hour}}
	rec := httptest.NewRecorder()
	http.SetCookie(rec, &http.Cookie{Name: "sid", Value: "real-cookie-value", Path: "/", MaxAge: 60, HttpOnly: true})
	http.SetCookie(rec, &http.Cookie{Name: "theme", Value: "dark"})
	rec.Header().Set("Content-Type", "application/json")
	body := `{"user":"bob","session":{"token":"real-session-token","ttl":3600}}`
	resp := &http.Response{Header: rec.Header(), Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
	n, err := cc.capture(resp)
	if err != nil || n != 2 {
		t.Fatalf("capture: %d, %v; want 2", n, err)
	}
	got, _ := io.ReadAll(resp.Body)
	if strings.Contains(string(got), "real-") || resp.ContentLength != int64(len(got)) {
		t.Fatalf("body %q (Content-Length %d)", got, resp.ContentLength)
	}
	ph := custodyPlaceholder(t, string(got))
	cookies := resp.Header.Values("Set-Cookie")
	if len(cookies) != 2 || !strings.HasPrefix(cookies[0], "sid="+CustodyPrefix) || !strings.HasSuffix(cookies[0], "; Path=/; Max-Age=60; HttpOnly") || cookies[1] != "theme=dark" {
		t.Fatalf("Set-Cookie %q", cookies)
	}
	cookiePH := strings.TrimSuffix(strings.TrimPrefix(cookies[0], "sid="), "; Path=/; Max-Age=60; HttpOnly")

	x := &exchange{r: httptest.NewRequest("GET", "https://crm.example/me", nil), wl: identity.Workload{Name: "agent"}, d: policy.Decision{Destination: "crm", Rule: "api", CustodyHeaders: []string{"X-Session"}}}
	out := x.r.Clone(context.Background())
	out.Header.Set("Cookie", "theme=dark; sid="+cookiePH)
	out.Header.Set("X-Session", ph)
	st := &reqState{}
	if f := g.custodyRequest(x, out, st); f != nil {
		t.Fatalf("custodyRequest: %+v", f)
	}
	if out.Header.Get("Cookie") != "theme=dark; sid=real-cookie-value" || out.Header.Get("X-Session") != "real-session-token" {
		t.Fatalf("substituted headers %v", out.Header)
	}
	if st.resp == nil || len(st.resp.scrubbers) != 2 {
		t.Fatalf("the substituted values are not scrubbed from the response")
	}
	cred, _, err := g.cache.Get(context.Background(), custodyKey("", "crm", "agent", strings.TrimPrefix(cookiePH, CustodyPrefix)), nil)
	if err != nil || !cred.Expiry.Equal(now.Add(time.Minute)) {
		t.Errorf("cookie value expires %v (%v), want at Max-Age, %v", cred.Expiry, err, now.Add(time.Minute))
	}

	for _, tc := range []struct {
		name     string
		workload string
		dest     string
		value    string
	}{
		{"another workload", "other-agent", "crm", ph},
		{"another destination", "agent", "billing", ph},
		{"made up", "agent", "crm", CustodyPrefix + strings.Repeat("0", custodyIDLen)},
		{"malformed", "agent", "crm", CustodyPrefix + "xyz"},
		{"anonymous", "", "crm", ph},
	} {
		x := &exchange{r: x.r, wl: identity.Workload{Name: tc.workload}, d: policy.Decision{Destination: tc.dest}}
		out := x.r.Clone(context.Background())
		out.Header.Set("Authorization", "Bearer "+tc.value)
		f := g.custodyRequest(x, out, &reqState{})
		if f == nil || f.Code != codeCustodyUnknown || f.Status != http.StatusForbidden || strings.Contains(f.Reason, "real-") {
			t.Errorf("%s: refusal %+v, want 403 %s", tc.name, f, codeCustodyUnknown)
		}
	}
	if n := g.cache.Len(); n != 2 {
		t.Errorf("%d cache entries after the refused lookups, want the 2 values only (misses are not kept)", n)
	}
}

func custodyPlaceholder(t *testing.T, s string) string {
	t.Helper()
	i := strings.Index(s, CustodyPrefix)
	if i < 0 || len(s) < i+len(CustodyPrefix)+custodyIDLen {
		t.Fatalf("no placeholder in %q", s)
	}
	return s[i : i+len(CustodyPrefix)+custodyIDLen]
}

// TestCustodyNeverPassesTheValue: whatever label, encoding or cookie
// syntax the upstream's answer uses, the custodied value never reaches
// the client: it is replaced by a placeholder, blanked (a cookie being
// deleted) or the answer is refused; a body that is not JSON passes
// unchanged.
func TestCustodyNeverPassesTheValue(t *testing.T) {
	g := custodyGateway(t)
	now := time.Now()
	const real = "REALSESSION0123456789"
	jsonBody := `{"user":"bob","session":{"token":"` + real + `"}}`
	gz := func(s string) string {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, _ = io.WriteString(w, s)
		_ = w.Close()
		return b.String()
	}
	for _, tc := range []struct {
		name    string
		header  http.Header
		body    string
		refused bool
		same    bool // passes unchanged
	}{
		{"json", http.Header{"Content-Type": {"application/json"}}, jsonBody, false, false},
		{"text/html", http.Header{"Content-Type": {"text/html; charset=utf-8"}}, jsonBody, false, false},
		{"text/plain", http.Header{"Content-Type": {"text/plain"}}, "\n  " + jsonBody, false, false},
		{"no type", http.Header{}, jsonBody, false, false},
		{"unparsable type", http.Header{"Content-Type": {"application/json;;"}}, jsonBody, false, false},
		{"gzip html", http.Header{"Content-Type": {"text/html"}, "Content-Encoding": {"gzip"}}, gz(jsonBody), false, false},
		{"an array", http.Header{"Content-Type": {"text/html"}}, `[` + jsonBody + `]`, false, false},
		{"html page", http.Header{"Content-Type": {"text/html"}}, "<html>" + real + "</html>", false, true},
		{"not JSON after all", http.Header{"Content-Type": {"text/html"}}, "[link] " + real, false, true},
		{"labelled JSON, broken", http.Header{"Content-Type": {"application/json"}}, `{"session":`, true, false},
		{"quoted cookie", http.Header{"Set-Cookie": {`sid="abc\054` + real + `"; Path=/`}}, "", true, false},
		{"backslash cookie", http.Header{"Set-Cookie": {`sid=` + real + `\x; Path=/`}}, "", true, false},
		{"deleted by Max-Age", http.Header{"Set-Cookie": {"sid=" + real + "; Max-Age=0; Path=/"}}, "", false, false},
		{"deleted by Expires", http.Header{"Set-Cookie": {"sid=" + real + "; Expires=Thu, 01 Jan 1970 00:00:00 GMT"}}, "", false, false},
		{"cookie", http.Header{"Set-Cookie": {"sid=" + real + "; Path=/; HttpOnly"}}, "", false, false},
		{"other broken cookie", http.Header{"Set-Cookie": {`theme="da\rk"`}}, "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := &custodyCapture{g: g, ctx: context.Background(), workload: "agent", destination: "crm", now: func() time.Time { return now },
				c: &policy.Custody{JSON: [][]string{{"session", "token"}}, Cookies: []string{"sid"}, TTL: time.Hour}}
			var body io.ReadCloser = http.NoBody
			if tc.body != "" {
				body = io.NopCloser(strings.NewReader(tc.body))
			}
			resp := &http.Response{Header: tc.header.Clone(), Body: body, ContentLength: int64(len(tc.body))}
			_, err := cc.capture(resp)
			if tc.refused {
				if err == nil {
					t.Fatal("passed, want refused")
				}
				if strings.Contains(err.Error(), real) {
					t.Errorf("the error holds the value: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			got, _ := io.ReadAll(resp.Body)
			var all bytes.Buffer
			_ = resp.Header.Write(&all)
			all.Write(got)
			if tc.same {
				if string(got) != tc.body || !slices.Equal(resp.Header.Values("Set-Cookie"), tc.header.Values("Set-Cookie")) {
					t.Errorf("changed: %q", all.String())
				}
				return
			}
			if strings.Contains(all.String(), real) {
				t.Errorf("the client gets the value:\n%s", all.String())
			}
		})
	}
}
