package transform

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/credgate/credgate/secret"
)

// TestPlaceholderSecretSameOnTheWire: a secret substituted for a
// placeholder reaches the upstream as the scrubber knows it, or the
// request is refused (ErrUnsafeValue: 502 placeholder_unsafe, the
// credential dropped). A secret that begins or ends with a space or tab,
// or holds a character that is not ASCII, placed in a header value
// (`X-Key: PH`, `Authorization: Bearer PH`) is refused: HTTP drops the
// whitespace and servers read the other bytes as ISO-8859-1, so an
// upstream echoing what it parsed returned the secret past the scrubber.
// In Basic credentials (base64) and in the query (percent-encoded) it
// passes intact. Each request that passes is sent to an upstream that
// echoes the header fields as it parsed them and as an ISO-8859-1 reader
// writes them, and the query as it decoded it; the scrubber must leave
// nothing of the secret. The 12 header cases failed before.
func TestPlaceholderSecretSameOnTheWire(t *testing.T) {
	const core = "sk-live-0123456789abcdef"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		_ = r.Header.Write(&b)
		for name, vv := range r.Header {
			for _, v := range vv {
				latin1 := make([]rune, len(v))
				for i := range len(v) {
					latin1[i] = rune(v[i])
				}
				fmt.Fprintf(&b, "%s: %s\n", name, string(latin1))
			}
		}
		for k, vv := range r.URL.Query() {
			fmt.Fprintf(&b, "%s=%s\n", k, strings.Join(vv, ","))
		}
		if u, p, ok := r.BasicAuth(); ok {
			fmt.Fprintf(&b, "basic %s %s\n", u, p)
		}
		_, _ = w.Write(b.Bytes())
	}))
	t.Cleanup(srv.Close)

	positions := []struct {
		name    string
		refused bool
		set     func(r *http.Request)
	}{
		{"header", true, func(r *http.Request) { r.Header.Set("X-Key", ph) }},
		{"bearer", true, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+ph) }},
		{"basic", false, func(r *http.Request) {
			r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("user:"+ph)))
		}},
		{"query", false, func(r *http.Request) { r.URL.RawQuery = "key=" + url.QueryEscape(ph) }},
	}
	failed, total := 0, 0
	for _, v := range []string{" " + core, core + " ", "\t" + core, core + "\t", core + "é", "ü" + core, core} {
		for _, pos := range positions {
			t.Run(fmt.Sprintf("%s/%q", pos.name, v), func(t *testing.T) {
				total++
				s, err := NewSubstituter([]Binding{{Name: "b", Placeholder: ph, Value: secret.New(v)}}, nil, Options{})
				if err != nil {
					t.Fatal(err)
				}
				r := newRequest(t, srv.URL+"/", "", "")
				pos.set(r)
				_, err = s.TransformRequest(r)
				if refuse := pos.refused && v != core; refuse {
					if !errors.Is(err, ErrUnsafeValue) {
						failed++
						t.Errorf("err = %v, want ErrUnsafeValue (the upstream would read another value than the secret)", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("TransformRequest: %v", err)
				}
				resp, err := srv.Client().Do(r)
				if err != nil {
					t.Fatal(err)
				}
				echo, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				scrubbed, _ := NewScrubber([]secret.Value{secret.New(v)}, ScrubOptions{}).Bytes(echo)
				if bytes.Contains(scrubbed, []byte(core)) {
					failed++
					t.Errorf("the upstream's echo keeps the secret past the scrubber:\n%s", scrubbed)
				}
			})
		}
	}
	t.Logf("%d of %d cases failed", failed, total)
}
