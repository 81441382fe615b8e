package httpclient_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/httpclient"
)

// TestErrorsCarryNothingSent: an endpoint answering bytes that do not
// parse as a response, echoing what the request sent — a header value, a
// Basic header's decoded password, a form body's value, a query value,
// whole or cut at a space — as its status line, status code, a header
// line, a length or a trailer line, gets none of it (no run of 8 bytes
// or more) into the error of a NewClient client's Do or body read, which
// is a SentRedactedError and still unwraps to the transport's error.
func TestErrorsCarryNothingSent(t *testing.T) {
	const (
		header = "hdr-secret-value Z"
		pass   = "basic-password/+=x"
		body   = "form-secret&value=1"
		query  = "query-secret value"
	)
	basic := base64.StdEncoding.EncodeToString([]byte("client:" + pass))
	echoes := map[string]func(r *http.Request) string{
		"header":       func(r *http.Request) string { return r.Header.Get("X-Api-Key") },
		"basic":        func(r *http.Request) string { return r.Header.Get("Authorization") },
		"basic-plain":  func(*http.Request) string { return "client:" + pass },
		"body":         func(r *http.Request) string { b, _ := io.ReadAll(r.Body); return string(b) },
		"form-decoded": func(r *http.Request) string { _ = r.ParseForm(); return r.PostForm.Get("secret") },
		"query":        func(r *http.Request) string { return r.URL.Query().Get("q") },
	}
	answers := map[string]func(e string) string{
		"status-line":    func(e string) string { return e + "\r\n\r\n" },
		"status-code":    func(e string) string { return "HTTP/1.1 " + strings.ReplaceAll(e, " ", "") + " OK\r\n\r\n" },
		"header-line":    func(e string) string { return "HTTP/1.1 200 OK\r\nX" + strings.ReplaceAll(e, ":", "") + "\r\n\r\n" },
		"content-length": func(e string) string { return "HTTP/1.1 200 OK\r\nContent-Length: " + e + "\r\n\r\n" },
		"trailer": func(e string) string {
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX" + strings.ReplaceAll(e, ":", "") + "\r\n\r\n"
		},
	}
	secrets := []string{header, pass, body, "form-secret", "value=1", query, basic}
	for en, echo := range echoes {
		for an, answer := range answers {
			t.Run(en+"/"+an, func(t *testing.T) {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					e := echo(r)
					c, rw, err := http.NewResponseController(w).Hijack()
					if err != nil {
						return
					}
					defer c.Close()
					_, _ = rw.WriteString(answer(e))
					_ = rw.Flush()
				}))
				t.Cleanup(srv.Close)
				c, err := httpclient.NewClient(httpclient.Options{Timeout: 5 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				form := url.Values{"secret": {body}}.Encode()
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+"/token?q="+url.QueryEscape(query), strings.NewReader(form))
				req.Header.Set("X-Api-Key", header)
				req.Header.Set("Authorization", "Basic "+basic)
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, err := c.Do(req)
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				if err == nil {
					t.Fatal("no error")
				}
				// http.Client names the URL, query included: callers
				// unwrap it and name the endpoint themselves.
				var ue *url.Error
				if errors.As(err, &ue) {
					err = ue.Err
				}
				var sr *httpclient.SentRedactedError
				if !errors.As(err, &sr) || sr.Unwrap() == nil {
					t.Errorf("error %v (%T) is not a SentRedactedError", err, err)
				}
				for _, s := range secrets {
					for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '&' || r == '=' }) {
						if len(part) >= 8 && strings.Contains(err.Error(), part) {
							t.Errorf("the error holds %q of what was sent: %v", part, err)
						}
					}
				}
			})
		}
	}
}
