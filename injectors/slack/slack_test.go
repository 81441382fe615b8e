package slack

import (
	"errors"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/injectors/injectortest"
)

const tok = "xoxb-1234-5678-s3cr3tb0tt0k3n"

var cred = injectortest.Cred

func TestInject(t *testing.T) {
	tests := []struct {
		name, settings, ctype, body, query string
		token                              string
		wantBody, wantQuery                string
		wantErr                            error
	}{
		{name: "JSON body: header only, body untouched", ctype: "application/json", body: `{"channel":"C1","text":"token=x"}`,
			wantBody: `{"channel":"C1","text":"token=x"}`},
		{name: "form body with the client's token: replaced in place", ctype: "application/x-www-form-urlencoded",
			body: "channel=C1&token=xoxb-placeholder&text=hi%20there", wantBody: "channel=C1&token=" + tok + "&text=hi%20there"},
		{name: "form token spelled with an escape, twice", ctype: "application/x-www-form-urlencoded; charset=utf-8",
			body: "t%6Fken=a&channel=C1&token=b", wantBody: "token=" + tok + "&channel=C1"},
		{name: "form body without a token: untouched", ctype: "application/x-www-form-urlencoded",
			body: "channel=C1&text=hi", wantBody: "channel=C1&text=hi"},
		{name: "token query parameter removed", query: "token=xoxb-placeholder&channel=C1", wantQuery: "channel=C1"},
		// Spellings a server reads as token (PHP drops a leading space
		// and ends a name at a NUL; arrays; case; ';'): each replaced or
		// removed like token itself.
		{name: "form token look-alikes after the token", ctype: "application/x-www-form-urlencoded",
			body: "token=a&+token=b&channel=C1&token%00x=c&TOKEN=d&token[]=e&x=1;token=f&%20token=g", wantBody: "token=" + tok + "&channel=C1"},
		{name: "form token look-alike alone", ctype: "application/x-www-form-urlencoded",
			body: "channel=C1&+token=b", wantBody: "channel=C1&token=" + tok},
		{name: "form names that only resemble token", ctype: "application/x-www-form-urlencoded",
			body: "tokens=a&xtoken=b&token_type=c", wantBody: "tokens=a&xtoken=b&token_type=c"},
		{name: "token query parameter in capitals alone", query: "TOKEN=a&channel=C1", wantQuery: "channel=C1"},
		{name: "token query look-alikes removed", query: "TOKEN=a&channel=C1&%74oken=b&+token=c&token%00=d&tok%65n[]=e", wantQuery: "channel=C1"},
		{name: "rotated token", token: "xoxe.xoxb-1-abc", ctype: "application/json", body: "{}", wantBody: "{}"},
		{name: "refresh token refused", token: "xoxe-1-abc", wantErr: injectors.ErrInvalidValue},
		{name: "not a Slack token", token: "sk_live_abc", wantErr: injectors.ErrInvalidValue},
		{name: "form body over max_body", settings: "max_body: 16", ctype: "application/x-www-form-urlencoded",
			body: "token=x&text=" + strings.Repeat("a", 32), wantErr: injectors.ErrBodyTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inj, err := injectortest.Load(t, Name, tt.settings)
			if err != nil {
				t.Fatal(err)
			}
			token := tt.token
			if token == "" {
				token = tok
			}
			target := "https://slack.com/api/chat.postMessage"
			if tt.query != "" {
				target += "?" + tt.query
			}
			r := httptest.NewRequest("POST", target, strings.NewReader(tt.body))
			if tt.body == "" {
				r = httptest.NewRequest("GET", target, nil)
			}
			if tt.ctype != "" {
				r.Header.Set("Content-Type", tt.ctype)
				r.Header.Set("Content-Length", strconv.Itoa(len(tt.body)))
			}
			r.Header.Set("Authorization", "Bearer xoxb-placeholder")
			err = injectors.Apply(inj, r, cred("token", token))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || strings.Contains(err.Error(), token) {
					t.Fatalf("error %v, want %v without the token", err, tt.wantErr)
				}
				if r.Header.Get("Authorization") != "" {
					t.Error("a failed injection set Authorization")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Header.Get("Authorization"); got != "Bearer "+token {
				t.Errorf("Authorization %q", got)
			}
			if got := r.URL.RawQuery; got != tt.wantQuery {
				t.Errorf("query %q, want %q", got, tt.wantQuery)
			}
			if tt.body == "" {
				return
			}
			b, _ := io.ReadAll(r.Body)
			if string(b) != tt.wantBody {
				t.Errorf("body %q, want %q", b, tt.wantBody)
			}
			if r.ContentLength != int64(len(tt.wantBody)) || r.Header.Get("Content-Length") != strconv.Itoa(len(tt.wantBody)) {
				t.Errorf("ContentLength %d, header %q, want %d", r.ContentLength, r.Header.Get("Content-Length"), len(tt.wantBody))
			}
		})
	}
}

func TestSettings(t *testing.T) {
	injectortest.CheckSettings(t, Name, map[string]string{
		"":               "",
		"max_body: 4096": "",
		"max_body: -1":   "must be positive",
		"field: '1x'":    "not a field name",
		"in: body":       `unknown field "in"`,
	})
}

func BenchmarkInject(b *testing.B) {
	inj, err := injectortest.Load(b, Name, "")
	if err != nil {
		b.Fatal(err)
	}
	c := cred("token", tok)
	b.Run("header", func(b *testing.B) {
		r := httptest.NewRequest("POST", "https://slack.com/api/chat.postMessage", nil)
		r.Header.Set("Content-Type", "application/json")
		b.ReportAllocs()
		for b.Loop() {
			if err := injectors.Apply(inj, r, c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("form-1KiB", func(b *testing.B) {
		body := "channel=C1&token=xoxb-placeholder&text=" + strings.Repeat("a", 1024-39)
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			r := httptest.NewRequest("POST", "https://slack.com/api/chat.postMessage", strings.NewReader(body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if err := injectors.Apply(inj, r, c); err != nil {
				b.Fatal(err)
			}
		}
	})
}
