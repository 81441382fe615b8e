package sigv4

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/miniotest"
	"github.com/credgate/credgate/internal/testpki"
)

// s3Spellings are wire spellings of object keys, each with the spelling
// the AWS SDKs send for the same key (every byte but the unreserved ones
// and '/' percent-encoded). S3 decodes the path and signs that encoding,
// so a request sent with either spelling must carry the same signature.
var s3Spellings = []struct{ wire, sdk string }{
	{"/bkt/plain", "/bkt/plain"},
	{"/bkt/a,b", "/bkt/a%2Cb"},
	{"/bkt/a%2Cb", "/bkt/a%2Cb"},
	{"/bkt/a+b", "/bkt/a%2Bb"},
	{"/bkt/a%2Bb", "/bkt/a%2Bb"},
	{"/bkt/a=b:c@d", "/bkt/a%3Db%3Ac%40d"},
	{"/bkt/a!b$c&d'e(f)g*h", "/bkt/a%21b%24c%26d%27e%28f%29g%2Ah"},
	{"/bkt/a%41b", "/bkt/aAb"},
	{"/bkt/a%7eb", "/bkt/a~b"},
	{"/bkt/a%7Eb", "/bkt/a~b"},
	{"/bkt/a~b", "/bkt/a~b"},
	{"/bkt/%E1%88%B4", "/bkt/%E1%88%B4"},
	{"/bkt/%e1%88%b4", "/bkt/%E1%88%B4"},
	{"/bkt/a%20b", "/bkt/a%20b"},
	{"/bkt/dir/a,b", "/bkt/dir/a%2Cb"},
}

// s3Request is a request to path (a wire spelling) of host.
func s3Request(t testing.TB, method, host, path string, body io.Reader) *http.Request {
	t.Helper()
	r := httptest.NewRequest(method, host+"/", body)
	u, err := r.URL.Parse(path)
	if err != nil {
		t.Fatal(err)
	}
	r.URL.Path, r.URL.RawPath = u.Path, u.RawPath
	r.RequestURI = ""
	if got := r.URL.EscapedPath(); got != path {
		t.Fatalf("the request would go as %s, not %s", got, path)
	}
	return r
}

// TestS3PathSpelling: an S3 request is signed over the key's S3
// encoding, whatever spelling of it the client sent, and the wire keeps
// the client's spelling; so are requests signed for s3-object-lambda and
// s3-outposts, which the S3 client signs with S3's rules.
func TestS3PathSpelling(t *testing.T) {
	for _, service := range []string{"s3", "s3-object-lambda", "s3-outposts"} {
		inj := load(t, "{service: "+service+", region: us-east-1}", suiteTime)
		sign := func(t *testing.T, path string) *http.Request {
			r := s3Request(t, "GET", "https://s3.example.test", path, nil)
			if err := inj.Inject(r, suiteCred); err != nil {
				t.Fatal(err)
			}
			return r
		}
		for _, tt := range s3Spellings {
			t.Run(service+tt.wire, func(t *testing.T) {
				got, want := sign(t, tt.wire), sign(t, tt.sdk)
				if a, b := got.Header.Get("Authorization"), want.Header.Get("Authorization"); a != b {
					t.Errorf("signature of %s differs from that of %s, the spelling S3 signs:\n got %s\nwant %s", tt.wire, tt.sdk, a, b)
				}
				if p := got.URL.EscapedPath(); p != tt.wire {
					t.Errorf("the path goes upstream as %s, want the client's %s", p, tt.wire)
				}
				if h := got.Header.Get("X-Amz-Content-Sha256"); h != "UNSIGNED-PAYLOAD" {
					t.Errorf("X-Amz-Content-Sha256 = %q, want UNSIGNED-PAYLOAD as for S3", h)
				}
			})
		}
	}
}

// TestS3PathSpellingMinIO sends every spelling, signed by the injector,
// to a real MinIO (which recomputes the signature as S3 does): each PUT
// and GET must be accepted. Skipped when MinIO is not built.
func TestS3PathSpellingMinIO(t *testing.T) {
	if _, err := miniotest.Binary(); err != nil {
		t.Skip(err)
	}
	ca, err := testpki.NewAuthority("sigv4-test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := miniotest.Start(ctx, miniotest.Options{Dir: t.TempDir(), CA: ca, Env: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.MakeBucket(ctx, "bkt"); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	inj := load(t, "{service: s3, region: us-east-1}", time.Now())
	inj.now = time.Now
	cred := awsCred(srv.RootUser, srv.RootPassword, "")
	for _, tt := range s3Spellings {
		for _, method := range []string{"PUT", "GET"} {
			var body io.Reader
			if method == "PUT" {
				body = strings.NewReader(tt.wire)
			}
			r := s3Request(t, method, srv.URL(), tt.wire, body).WithContext(ctx)
			if err := inj.Inject(r, cred); err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s %s: %d %.200s", method, tt.wire, resp.StatusCode, b)
			}
		}
	}
}
