package azuresharedkey

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"maps"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/injectors/injectortest"
	"github.com/credgate/credgate/internal/azuretest"
	"github.com/credgate/credgate/providers"
)

const account = "acmereports"

func newKey(t testing.TB) string {
	k := make([]byte, 64)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k)
}

func load(t testing.TB, settings string, now func() time.Time) *Injector {
	t.Helper()
	inj, err := injectortest.Load(t, Name, settings)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	s := inj.(*Injector)
	if now != nil {
		s.now = now
	}
	return s
}

// capture answers every request with status and keeps the last one.
type capture struct {
	status int
	last   *http.Request
}

func (c *capture) RoundTrip(r *http.Request) (*http.Response, error) {
	c.last = r
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	h := http.Header{"X-Ms-Request-Id": {"1"}, "Content-Type": {"application/xml"}, "Etag": {`"0x1"`}, "Last-Modified": {time.Now().UTC().Format(http.TimeFormat)}}
	body := ""
	if r.Method == http.MethodGet {
		body = `<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="https://acmereports.blob.core.windows.net/" ContainerName="c"><Blobs></Blobs><NextMarker/></EnumerationResults>`
	}
	return &http.Response{StatusCode: c.status, Header: h, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
}

// TestSameSignatureAsTheSDK: for requests azblob signs itself with the
// account key, the injector, given the same x-ms-date, produces the same
// Authorization header, byte for byte.
func TestSameSignatureAsTheSDK(t *testing.T) {
	key := newKey(t)
	cred, err := azblob.NewSharedKeyCredential(account, key)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		status int
		call   func(c *azblob.Client) error
	}{
		{"put blob", http.StatusCreated, func(c *azblob.Client) error {
			_, err := c.UploadBuffer(ctx, "reports", "2026/q4 report (final).csv", []byte("a,b\n1,2\n"), &azblob.UploadBufferOptions{
				Metadata: map[string]*string{"Owner": new("billing"), "team": new("fin ops")}})
			return err
		}},
		// Metadata names are C# identifiers: letters, digits and '_'.
		// Storage orders x-ms-* names as .NET compares strings, not by
		// bytes: '_' before digits before letters, '-' ignored but as a
		// tie-breaker (the SDK's weight tables).
		{"metadata order", http.StatusCreated, func(c *azblob.Client) error {
			md := map[string]*string{}
			for _, k := range []string{"a1", "a_1", "a_b", "ab", "key2", "key_2", "key_", "key", "k9", "k_9", "Z_", "z0"} {
				md[k] = new("v")
			}
			_, err := c.UploadBuffer(ctx, "reports", "m", []byte("x"), &azblob.UploadBufferOptions{Metadata: md})
			return err
		}},
		{"list with query", http.StatusOK, func(c *azblob.Client) error {
			p := c.NewListBlobsFlatPager("reports", &azblob.ListBlobsFlatOptions{Prefix: new("2026/"), MaxResults: new(int32(5)),
				Include: azblob.ListBlobsInclude{Metadata: true, Snapshots: true}})
			_, err := p.NextPage(ctx)
			return err
		}},
		{"create container", http.StatusCreated, func(c *azblob.Client) error {
			_, err := c.CreateContainer(ctx, "reports", nil)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &capture{status: tc.status}
			c, err := azblob.NewClientWithSharedKeyCredential("https://"+account+".blob.core.windows.net/", cred,
				&azblob.ClientOptions{ClientOptions: policy.ClientOptions{Transport: &http.Client{Transport: rt}, Retry: policy.RetryOptions{MaxRetries: -1}}})
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.call(c); err != nil {
				t.Fatal(err)
			}
			r := rt.last
			want := r.Header.Get("Authorization")
			date, err := http.ParseTime(r.Header.Get("x-ms-date"))
			if err != nil || want == "" {
				t.Fatalf("the SDK sent no signature or date: %v", r.Header)
			}
			r.Header.Set("Authorization", "SharedKey "+account+":placeholder")
			inj := load(t, "", func() time.Time { return date })
			if err := injectors.Apply(inj, r, injectortest.Cred(FieldAccountKey, key)); err != nil {
				t.Fatal(err)
			}
			if got := r.Header.Get("Authorization"); got != want {
				t.Errorf("Authorization %q, the SDK's %q for %s %s", got, want, r.Method, r.URL)
			}
		})
	}
}

// redirect sends requests to the fake, keeping the Host addressed.
type redirect struct {
	addr string
	base http.RoundTripper
}

func (rt redirect) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Host = rt.addr
	return rt.base.RoundTrip(r)
}

// TestFakeAccepts: requests a client made with no key, signed by the
// injector, are accepted by the fake (which recomputes the signature on
// its own); client copies of Authorization and x-ms-date are replaced.
func TestFakeAccepts(t *testing.T) {
	key := newKey(t)
	s := azuretest.NewStorage(azuretest.StorageOptions{Account: account, Key: key})
	t.Cleanup(s.Close)
	hc := &http.Client{Transport: redirect{s.Addr, s.Client().Transport}}
	inj := load(t, "", nil)
	cred := injectortest.Cred(FieldAccountKey, key)
	do := func(method, url, body string, h http.Header) *http.Response {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		r := httptest.NewRequest(method, url, rd)
		r.RequestURI = ""
		for k, v := range h {
			r.Header[k] = v
		}
		r.Header.Set("Authorization", "SharedKey "+account+":Zm9yZ2Vk")
		r.Header.Set("x-ms-date", "Mon, 01 Jan 2001 00:00:00 GMT")
		if err := injectors.Apply(inj, r, cred); err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	base := "https://" + account + ".blob.core.windows.net"
	for _, st := range []struct {
		resp *http.Response
		want int
	}{
		{do("PUT", base+"/reports?restype=container", "", nil), 201},
		{do("PUT", base+"/reports/a%20b.txt", "hello", http.Header{"X-Ms-Blob-Type": {"BlockBlob"}, "Content-Type": {"text/plain"},
			"X-Ms-Meta-Team": {"fin", "ops"}, "Content-Md5": {"XUFAKrxLKna5cZ2REBfFkg=="}}), 201},
		{do("GET", base+"/reports?restype=container&comp=list&Prefix=a&include=metadata&include=snapshots", "", nil), 200},
		{do("GET", base+"/reports/a%20b.txt", "", http.Header{"X-Ms-Range": {"bytes=0-4"}, "If-None-Match": {`"0x0"`}}), 200},
		// An empty upload under a version before 2015-02-21 signs its
		// Content-Length as "0", a later one as "".
		{do("PUT", base+"/reports/empty-old", "", http.Header{"X-Ms-Blob-Type": {"BlockBlob"}, "X-Ms-Version": {"2014-02-14"}}), 201},
		{do("PUT", base+"/reports/empty-new", "", http.Header{"X-Ms-Blob-Type": {"BlockBlob"}}), 201},
	} {
		if st.resp.StatusCode != st.want {
			b, _ := io.ReadAll(st.resp.Body)
			t.Errorf("%s %s: %d %s (refused %v)", st.resp.Request.Method, st.resp.Request.URL, st.resp.StatusCode, b, s.Refused())
		}
	}
	if n := s.Accepted(); n != 6 {
		t.Errorf("the fake accepted %d requests, want 6", n)
	}

	// A gateway clock 20 minutes behind: the service refuses the date
	// (403 AuthenticationFailed), which the client sees as is.
	inj.now = func() time.Time { return time.Now().Add(-20 * time.Minute) }
	resp := do("GET", base+"/reports/a%20b.txt", "", nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a skewed clock: status %d, want 403", resp.StatusCode)
	}
	if r := s.Refused(); len(r) != 1 || !strings.Contains(r[0], "more than 15 minutes") {
		t.Errorf("refused %q, want the date", r)
	}
}

// failingBody fails the test if read.
type failingBody struct{ t *testing.T }

func (b failingBody) Read([]byte) (int, error) {
	b.t.Error("the injector read the body")
	return 0, errors.New("read")
}
func (failingBody) Close() error { return nil }

func TestBodyNotRead(t *testing.T) {
	r := httptest.NewRequest("PUT", "https://"+account+".blob.core.windows.net/c/big.bin", nil)
	r.Body = failingBody{t}
	r.ContentLength = 1 << 40
	if err := load(t, "", nil).Inject(r, injectortest.Cred(FieldAccountKey, newKey(t))); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Body.(failingBody); !ok {
		t.Error("the body was replaced")
	}
}

func TestSettingsAndAccount(t *testing.T) {
	key := newKey(t)
	for _, tc := range []struct {
		name, settings, url string
		cred                *providers.Credential
		wantAcct, wantVer   string
	}{
		{"host's first label", "", "https://acmereports.blob.core.windows.net/c/b", injectortest.Cred(FieldAccountKey, key), "acmereports", DefaultVersion},
		{"US Gov queue", "", "https://govacct.queue.core.usgovcloudapi.net/q/messages", injectortest.Cred("token", key), "govacct", DefaultVersion},
		{"account setting", "account: custom1\nversion: 2024-11-04", "https://files.example.com/share/x", injectortest.Cred(FieldAccountKey, key), "custom1", "2024-11-04"},
		{"credential names it", "key_field: k", "https://storage.example.com/c/b", injectortest.Cred("k", key, FieldAccountName, "fromcred"), "fromcred", DefaultVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tc.url, nil)
			r.Header.Set("x-ms-version", "2019-02-02")
			inj := load(t, tc.settings, nil)
			if tc.wantVer == DefaultVersion {
				r.Header.Del("x-ms-version")
			}
			if err := injectors.Apply(inj, r, tc.cred); err != nil {
				t.Fatal(err)
			}
			if a := r.Header.Get("Authorization"); !strings.HasPrefix(a, "SharedKey "+tc.wantAcct+":") {
				t.Errorf("Authorization %q, want account %s", a, tc.wantAcct)
			}
			if v := r.Header.Get("x-ms-version"); v != tc.wantVer {
				t.Errorf("x-ms-version %q, want %s", v, tc.wantVer)
			}
		})
	}
	t.Run("the client's version is kept", func(t *testing.T) {
		r := httptest.NewRequest("GET", "https://acmereports.blob.core.windows.net/c/b", nil)
		r.Header.Set("x-ms-version", "2023-11-03")
		if err := injectors.Apply(load(t, "", nil), r, injectortest.Cred(FieldAccountKey, key)); err != nil || r.Header.Get("x-ms-version") != "2023-11-03" {
			t.Errorf("err %v, version %q", err, r.Header.Get("x-ms-version"))
		}
	})
}

// TestBadInput: each refusal names the cause and leaves the request
// untouched; no error holds the key.
func TestBadInput(t *testing.T) {
	key := newKey(t)
	for _, tc := range []struct {
		name, url string
		cred      *providers.Credential
		want      string
		is        error
	}{
		{"key not base64", "https://acmereports.blob.core.windows.net/c/b", injectortest.Cred(FieldAccountKey, "not base64 !!"), "not base64", injectors.ErrInvalidValue},
		{"no key", "https://acmereports.blob.core.windows.net/c/b", injectortest.Cred("password", key), `no "account_key" field`, injectors.ErrMissingField},
		{"not a storage host", "https://example.com/c/b", injectortest.Cred(FieldAccountKey, key), "set account in the rule", nil},
		{"SAS URL", "https://acmereports.blob.core.windows.net/c/b?sv=2024-11-04&sig=abc%3D", injectortest.Cred(FieldAccountKey, key), "SAS", injectors.ErrUnsupportedRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tc.url, nil)
			before := r.Header.Clone()
			err := load(t, "", nil).Inject(r, tc.cred)
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), key) {
				t.Error("the error holds the key")
			}
			if len(r.Header) != len(before) {
				t.Errorf("a refused request was changed: %v", r.Header)
			}
		})
	}
	for _, tc := range []struct{ settings, want string }{
		{"account: Acme", "not a storage account name"},
		{"version: latest", "not a storage service version"},
		{"version: 2009-09-19", "not a storage service version"},
		{"sign: body", "sign"},
	} {
		if _, err := injectortest.Load(t, Name, tc.settings); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.settings, err, tc.want)
		}
	}
}

// BenchmarkInject signs a small Blob GET as the gateway does per request,
// the credential warm (in the cache): base64 key, HMAC over the string to
// sign, two headers set.
func BenchmarkInject(b *testing.B) {
	inj := load(b, "", nil)
	cred := injectortest.Cred(FieldAccountKey, newKey(b))
	base := httptest.NewRequest("GET", "https://acmereports.blob.core.windows.net/reports/2026/q4.csv?snapshot=2026-01-01T00%3A00%3A00Z", nil)
	base.Header.Set("User-Agent", "azsdk-go-azblob/v1.8.3")
	base.Header.Set("x-ms-version", "2026-12-06")
	base.Header.Set("x-ms-client-request-id", "6f0a1c52-0000-4000-8000-000000000000")
	b.ReportAllocs()
	for b.Loop() {
		r := base.Clone(base.Context())
		if err := injectors.Apply(inj, r, cred); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBearer is the plain bearer injector on the same request, the
// baseline BenchmarkInject is compared with.
func BenchmarkBearer(b *testing.B) {
	inj, err := injectortest.Load(b, "bearer", "")
	if err != nil {
		b.Fatal(err)
	}
	cred := injectortest.Cred(providers.FieldToken, "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.e30.sig")
	base := httptest.NewRequest("GET", "https://acmereports.blob.core.windows.net/reports/2026/q4.csv?snapshot=2026-01-01T00%3A00%3A00Z", nil)
	base.Header.Set("User-Agent", "azsdk-go-azblob/v1.8.3")
	base.Header.Set("x-ms-version", "2026-12-06")
	b.ReportAllocs()
	for b.Loop() {
		r := base.Clone(base.Context())
		if err := injectors.Apply(inj, r, cred); err != nil {
			b.Fatal(err)
		}
	}
}

// serviceOrder is the order Azure Storage's service expects x-ms-* names
// in, as its "expected string to sign" showed in
// Azure/azure-sdk-for-python#33951 and #10277 (i_ before i0).
var serviceOrder = []string{
	"x-ms-blob-type", "x-ms-client-request-id", "x-ms-date",
	"x-ms-meta-i_", "x-ms-meta-i0",
	"x-ms-meta-test", "x-ms-meta-test-", "x-ms-meta-test--", "x-ms-meta-test_-", "x-ms-meta-test-_",
	"x-ms-meta-test__", "x-ms-meta-test_a", "x-ms-meta-test_a-", "x-ms-meta-test-_a", "x-ms-meta-test_a_",
	"x-ms-meta-test_a-_", "x-ms-meta-test_z", "x-ms-meta-test-a", "x-ms-version",
}

// TestHeaderOrderVectors: every permutation sorts to the service's order,
// whether the names are lower-case or net/http's canonical form.
func TestHeaderOrderVectors(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	for n := range 50 {
		names := slices.Clone(serviceOrder)
		rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		if n%2 == 1 {
			for i, k := range names {
				names[i] = http.CanonicalHeaderKey(k)
			}
		}
		slices.SortFunc(names, compareHeaderNames)
		for i, k := range names {
			if strings.ToLower(k) != serviceOrder[i] {
				t.Fatalf("sorted %q,\nthe service expects %q", names, serviceOrder)
			}
		}
	}
}

// TestMetadataOrderMatchesTheSDK: for random sets of metadata names
// (letters, digits, '_': what metadata names may hold), the injector's
// signature is the SDK's.
func TestMetadataOrderMatchesTheSDK(t *testing.T) {
	key := newKey(t)
	cred, err := azblob.NewSharedKeyCredential(account, key)
	if err != nil {
		t.Fatal(err)
	}
	rt := &capture{status: http.StatusCreated}
	c, err := azblob.NewClientWithSharedKeyCredential("https://"+account+".blob.core.windows.net/", cred,
		&azblob.ClientOptions{ClientOptions: policy.ClientOptions{Transport: &http.Client{Transport: rt}, Retry: policy.RetryOptions{MaxRetries: -1}}})
	if err != nil {
		t.Fatal(err)
	}
	rng := mrand.New(mrand.NewPCG(3, 4))
	const alphabet = "ab_09Z"
	failed := 0
	for range 200 {
		md := map[string]*string{}
		for range 2 + rng.IntN(4) {
			b := []byte{"abZ_"[rng.IntN(4)]}
			for range rng.IntN(4) {
				b = append(b, alphabet[rng.IntN(len(alphabet))])
			}
			md[string(b)] = new("v")
		}
		if _, err := c.UploadBuffer(context.Background(), "c", "b", []byte("x"), &azblob.UploadBufferOptions{Metadata: md}); err != nil {
			t.Fatal(err)
		}
		r := rt.last
		want := r.Header.Get("Authorization")
		date, err := http.ParseTime(r.Header.Get("x-ms-date"))
		if err != nil {
			t.Fatal(err)
		}
		inj := load(t, "", func() time.Time { return date })
		if err := injectors.Apply(inj, r, injectortest.Cred(FieldAccountKey, key)); err != nil {
			t.Fatal(err)
		}
		if got := r.Header.Get("Authorization"); got != want {
			failed++
			if failed <= 3 {
				t.Errorf("metadata %v: signature differs from the SDK's", slices.Sorted(maps.Keys(md)))
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of 200 metadata sets signed differently from the SDK", failed)
	}
}
