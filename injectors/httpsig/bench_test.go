package httpsig

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"

	"github.com/credgate/credgate/injectors/injectortest"
)

// BenchmarkSign1KiB signs a POST with a 1 KiB JSON body, covering the
// default components (method, authority, path, query, content-type and a
// SHA-256 Content-Digest of the body), with each algorithm and a warm
// (already parsed) key. Issue 16's target is 10 µs per request; the
// asymmetric algorithms' own primitive (Ed25519, ECDSA, RSA signing) is
// most of their figure.
func BenchmarkSign1KiB(b *testing.B) {
	body := bytes.Repeat([]byte(`{"k":"0123456789abcdef"}`), 43)[:1024]
	for _, k := range testKeys(b) {
		b.Run(k.alg, func(b *testing.B) {
			inj, err := injectortest.Load(b, "httpsig", fmt.Sprintf("{key_id: k, algorithm: %s}", k.alg))
			if err != nil {
				b.Fatal(err)
			}
			cred := injectortest.Cred(k.field, k.value)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				r, _ := http.NewRequest("POST", "https://api.partner.example/v1/orders?expand=items", bytes.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				if err := inj.Inject(r, cred); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
