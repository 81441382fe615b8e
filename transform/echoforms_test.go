package transform

import (
	"bytes"
	"fmt"
	"html"
	htmltemplate "html/template"
	"strings"
	"testing"
	texttemplate "text/template"

	"github.com/credgate/credgate/secret"
)

// TestScrubOtherEncodersSpellings: a secret echoed by an upstream as
// another framework spells it — in a JSON answer (.NET's
// System.Text.Json escapes '+' as \u002B, PHP writes \/), a URL (Python's
// quote keeps '/' but escapes '+', encodeURIComponent keeps '!'()*',
// Java's URLEncoder escapes '~'), an HTML page (html/template writes
// &#43;, Python &quot; and &#x27;, PHP &#039;) or numeric character
// references and \u escapes of every character, or hex of its bytes
// (%x, %X) — is scrubbed. The
// spellings are those the libraries' documentation gives, typed by hand,
// and the live output of Go's html.EscapeString, text/template's
// HTMLEscapeString and html/template; before, only Go's URL and JSON
// spellings were known and none of these was scrubbed.
func TestScrubOtherEncodersSpellings(t *testing.T) {
	const v = `Ab+Cd/Ef"Gh<Ij'Kl&Mn Op~Q`
	var tmpl bytes.Buffer
	if err := htmltemplate.Must(htmltemplate.New("").Parse(`{{.}}`)).Execute(&tmpl, v); err != nil {
		t.Fatal(err)
	}
	var attr bytes.Buffer
	if err := htmltemplate.Must(htmltemplate.New("").Parse(`<a title="{{.}}">`)).Execute(&attr, v); err != nil {
		t.Fatal(err)
	}
	attrValue := strings.TrimSuffix(strings.TrimPrefix(attr.String(), `<a title="`), `">`)
	spellings := map[string]string{
		".NET System.Text.Json":          `Ab\u002BCd/Ef\u0022Gh\u003CIj\u0027Kl\u0026Mn Op~Q`,
		"php json_encode":                `Ab+Cd\/Ef\"Gh<Ij'Kl&Mn Op~Q`,
		"json every character \\u":       `Ab\u002BCd\u002FEf\u0022Gh\u003CIj\u0027Kl\u0026Mn\u0020Op\u007EQ`,
		"json every character \\u lower": `Ab\u002bCd\u002fEf\u0022Gh\u003cIj\u0027Kl\u0026Mn\u0020Op\u007eQ`,
		"python quote":                   `Ab%2BCd/Ef%22Gh%3CIj%27Kl%26Mn%20Op~Q`,
		"python quote_plus":              `Ab%2BCd%2FEf%22Gh%3CIj%27Kl%26Mn+Op~Q`,
		"js encodeURIComponent":          `Ab%2BCd%2FEf%22Gh%3CIj'Kl%26Mn%20Op~Q`,
		"java URLEncoder":                `Ab%2BCd%2FEf%22Gh%3CIj%27Kl%26Mn+Op%7EQ`,
		"php rawurlencode":               `Ab%2BCd%2FEf%22Gh%3CIj%27Kl%26Mn%20Op~Q`,
		"percent every byte":             `Ab%2BCd%2FEf%22Gh%3CIj%27Kl%26Mn%20Op%7EQ`,
		"percent every byte lower":       `Ab%2bCd%2fEf%22Gh%3cIj%27Kl%26Mn%20Op%7eQ`,
		"python html.escape":             `Ab+Cd/Ef&quot;Gh&lt;Ij&#x27;Kl&amp;Mn Op~Q`,
		"php htmlspecialchars":           `Ab+Cd/Ef&quot;Gh&lt;Ij&#039;Kl&amp;Mn Op~Q`,
		"html &#N;":                      `Ab&#43;Cd&#47;Ef&#34;Gh&#60;Ij&#39;Kl&#38;Mn&#32;Op&#126;Q`,
		"html &#xH;":                     `Ab&#x2B;Cd&#x2F;Ef&#x22;Gh&#x3C;Ij&#x27;Kl&#x26;Mn&#x20;Op&#x7E;Q`,
		"go html.EscapeString":           html.EscapeString(v),
		"go text/template HTMLEscape":    texttemplate.HTMLEscapeString(v),
		"go html/template text":          tmpl.String(),
		"go html/template attribute":     attrValue,
		"hex %x":                         fmt.Sprintf("%x", v),
		"hex %X":                         fmt.Sprintf("%X", v),
	}
	s := NewScrubber([]secret.Value{secret.New(v)}, ScrubOptions{KeepLength: true})
	for name, sp := range spellings {
		in := "before " + sp + " after"
		got, n := s.Bytes([]byte(in))
		if n != 1 || string(got) != "before "+sameLength(secret.Redacted, len(sp))+" after" {
			t.Errorf("%s: %q came out %q (%d redactions), want it redacted whole", name, sp, got, n)
		}
	}
}
