package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/injectors"
	"github.com/credgate/credgate/providers"
)

// load builds the injector from YAML settings, as a policy would, with a
// fixed signing clock.
func load(t testing.TB, settings string, now time.Time) *Injector {
	t.Helper()
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(settings), &node); err != nil {
		t.Fatal(err)
	}
	var n *yaml.Node
	if len(node.Content) > 0 {
		n = node.Content[0]
	}
	inj, err := injectors.Load(context.Background(), "sigv4", n)
	if err != nil {
		t.Fatalf("load sigv4: %v", err)
	}
	s := inj.(*Injector)
	s.now = func() time.Time { return now }
	return s
}

func awsCred(akid, secret, token string) *providers.Credential {
	f := map[string]providers.Secret{
		providers.FieldAccessKeyID:     providers.NewSecret(akid),
		providers.FieldSecretAccessKey: providers.NewSecret(secret),
	}
	if token != "" {
		f[providers.FieldSessionToken] = providers.NewSecret(token)
	}
	return &providers.Credential{Fields: f}
}

// suiteCred and suiteTime are the credentials and time of the AWS SigV4
// test suite (aws-sig-v4-test-suite, region us-east-1, service "service").
var (
	suiteCred = awsCred("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "")
	suiteTime = time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)
)

// TestSuiteVectors re-types cases of the AWS SigV4 test suite. The
// client's own (wrong) signature headers are on every request and must be
// replaced.
func TestSuiteVectors(t *testing.T) {
	type hdr struct{ k, v string }
	tests := []struct {
		name, method, target, body string
		headers                    []hdr
		signed, signature          string
	}{
		{name: "get-vanilla", method: "GET", target: "/",
			signed: "host;x-amz-date", signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
		{name: "get-vanilla-empty-query-key", method: "GET", target: "/?Param1=value1",
			signed: "host;x-amz-date", signature: "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"},
		{name: "get-vanilla-query-order-key-case", method: "GET", target: "/?Param2=value2&Param1=value1",
			signed: "host;x-amz-date", signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
		{name: "get-unreserved", method: "GET", target: "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
			signed: "host;x-amz-date", signature: "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"},
		{name: "get-header-key-duplicate", method: "GET", target: "/",
			headers: []hdr{{"My-Header1", "value2"}, {"My-Header1", "value2"}, {"My-Header1", "value1"}},
			signed:  "host;my-header1;x-amz-date", signature: "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"},
		{name: "get-header-value-order", method: "GET", target: "/",
			headers: []hdr{{"My-Header1", "value4"}, {"My-Header1", "value1"}, {"My-Header1", "value3"}, {"My-Header1", "value2"}},
			signed:  "host;my-header1;x-amz-date", signature: "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"},
		{name: "get-header-value-trim", method: "GET", target: "/",
			headers: []hdr{{"My-Header1", " value1"}, {"My-Header2", ` "a   b   c"`}},
			signed:  "host;my-header1;my-header2;x-amz-date", signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
		{name: "post-vanilla", method: "POST", target: "/",
			signed: "host;x-amz-date", signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
		{name: "post-vanilla-query", method: "POST", target: "/?Param1=value1",
			signed: "host;x-amz-date", signature: "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
		{name: "post-header-key-sort", method: "POST", target: "/",
			headers: []hdr{{"My-Header1", "value1"}},
			signed:  "host;my-header1;x-amz-date", signature: "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"},
		{name: "post-x-www-form-urlencoded", method: "POST", target: "/", body: "Param1=value1",
			headers: []hdr{{"Content-Type", "application/x-www-form-urlencoded"}},
			signed:  "content-type;host;x-amz-date", signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"},
		{name: "post-header-value-case", method: "POST", target: "/",
			headers: []hdr{{"My-Header1", "VALUE1"}},
			signed:  "host;my-header1;x-amz-date", signature: "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"},
		{name: "get-vanilla-query-unreserved", method: "GET",
			target: "/?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
			signed: "host;x-amz-date", signature: "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"},
		// The suite's request line has the raw UTF-8 bytes; on the wire
		// (and through the gateway, which refuses raw non-ASCII) they are
		// percent-encoded, which decodes to the same parameter.
		{name: "get-vanilla-utf8-query", method: "GET", target: "/?%E1%88%B4=bar",
			signed: "host;x-amz-date", signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"},
		{name: "get-vanilla-query-order-encoded", method: "GET", target: "/?Param-3=Value3&Param=Value2&%E1%88%B4=Value1",
			signed: "host;x-amz-date", signature: "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac"},
		// Obsolete line folding: net/http joins the continuation lines
		// with single spaces before the injector sees the header, which is
		// the value the suite canonicalizes.
		{name: "get-header-value-multiline", method: "GET", target: "/",
			headers: []hdr{{"My-Header1", "value1 value2 value3"}},
			signed:  "host;my-header1;x-amz-date", signature: "cfd34249e4b1c8d6b91ef74165d41a32e5fab3306300901bb65a51a73575eefd"},
	}
	inj := load(t, "{service: service, region: us-east-1}", suiteTime)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "https://example.amazonaws.com"+tt.target, strings.NewReader(tt.body))
			// The suite's requests carry no Content-Length header.
			r.ContentLength = -1
			if tt.body == "" {
				r.Body, r.ContentLength = http.NoBody, 0
			}
			r.Header = http.Header{}
			for _, h := range tt.headers {
				r.Header.Add(h.k, h.v)
			}
			// The client's placeholder signature.
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=PLACEHOLDER/20150830/us-east-1/service/aws4_request, SignedHeaders=host, Signature=00")
			r.Header.Set("X-Amz-Date", "20990101T000000Z")
			r.Header.Set("X-Amz-Security-Token", "client-token")
			if err := inj.Inject(r, suiteCred); err != nil {
				t.Fatal(err)
			}
			want := "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=" + tt.signed + ", Signature=" + tt.signature
			if diff := cmp.Diff(want, r.Header.Get("Authorization")); diff != "" {
				t.Errorf("Authorization (-want +got):\n%s", diff)
			}
			if got := r.Header.Get("X-Amz-Date"); got != "20150830T123600Z" {
				t.Errorf("X-Amz-Date = %q", got)
			}
			if got := r.Header.Values("X-Amz-Security-Token"); got != nil {
				t.Errorf("the client's session token survived: %q", got)
			}
			if got := r.Header.Get("X-Amz-Content-Sha256"); got != "" {
				t.Errorf("X-Amz-Content-Sha256 = %q to a service other than s3", got)
			}
			if tt.body != "" {
				b, _ := io.ReadAll(r.Body)
				if string(b) != tt.body {
					t.Errorf("body after hashing = %q, want %q", b, tt.body)
				}
			}
		})
	}
}

// TestSessionToken: the credential's session token is sent and signed
// (post-sts-header-before of the suite, with the token of its README,
// and get-vanilla-with-session-token).
func TestSessionToken(t *testing.T) {
	t.Run("get-vanilla-with-session-token", func(t *testing.T) {
		token := "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"
		inj := load(t, "{service: service, region: us-east-1}", suiteTime)
		r := httptest.NewRequest("GET", "https://example.amazonaws.com/", nil)
		r.Header = http.Header{"X-Amz-Security-Token": {"client-placeholder"}}
		if err := inj.Inject(r, awsCred("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)); err != nil {
			t.Fatal(err)
		}
		want := "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
		if diff := cmp.Diff(want, r.Header.Get("Authorization")); diff != "" {
			t.Errorf("Authorization (-want +got):\n%s", diff)
		}
		if got := r.Header.Values("X-Amz-Security-Token"); len(got) != 1 || got[0] != token {
			t.Errorf("X-Amz-Security-Token is not the credential's alone")
		}
	})
	token := "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
	cred := awsCred("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
	inj := load(t, "{service: service, region: us-east-1}", suiteTime)
	r := httptest.NewRequest("POST", "https://example.amazonaws.com/", nil)
	r.Body, r.ContentLength = http.NoBody, 0
	r.Header = http.Header{}
	if err := inj.Inject(r, cred); err != nil {
		t.Fatal(err)
	}
	if got := r.Header.Get("X-Amz-Security-Token"); got != token {
		t.Errorf("X-Amz-Security-Token not the credential's")
	}
	want := "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
	if diff := cmp.Diff(want, r.Header.Get("Authorization")); diff != "" {
		t.Errorf("Authorization (-want +got):\n%s", diff)
	}
}

func TestEndpoint(t *testing.T) {
	tests := []struct{ host, service, region string }{
		{"s3.amazonaws.com", "s3", "us-east-1"},
		{"bucket.s3.amazonaws.com", "s3", "us-east-1"},
		{"my.bucket.s3.eu-west-1.amazonaws.com", "s3", "eu-west-1"},
		{"s3.eu-west-1.amazonaws.com:443", "s3", "eu-west-1"},
		{"bucket.s3-eu-west-1.amazonaws.com", "s3", "eu-west-1"},
		{"s3-external-1.amazonaws.com", "s3", "us-east-1"},
		{"s3.dualstack.ap-southeast-2.amazonaws.com", "s3", "ap-southeast-2"},
		{"bucket.s3-fips.dualstack.us-gov-west-1.amazonaws.com", "s3", "us-gov-west-1"},
		{"ap-1234.s3-accesspoint.us-west-2.amazonaws.com", "s3", "us-west-2"},
		{"s3.cn-north-1.amazonaws.com.cn", "s3", "cn-north-1"},
		{"sts.amazonaws.com", "sts", "us-east-1"},
		{"sts.eu-central-1.amazonaws.com", "sts", "eu-central-1"},
		{"sts-fips.us-east-2.amazonaws.com", "sts", "us-east-2"},
		{"sts.us-east-1.api.aws", "sts", "us-east-1"},
		{"dynamodb.us-east-1.amazonaws.com", "dynamodb", "us-east-1"},
		{"dynamodb-fips.us-gov-east-1.amazonaws.com", "dynamodb", "us-gov-east-1"},
		{"dynamodb.us-east-1.api.aws", "dynamodb", "us-east-1"},
		{"sqs.eu-north-1.amazonaws.com", "sqs", "eu-north-1"},
		{"queue.amazonaws.com", "sqs", "us-east-1"},
		{"sns.ca-central-1.amazonaws.com", "sns", "ca-central-1"},
		{"kms.me-south-1.amazonaws.com", "kms", "me-south-1"},
		{"kms-fips.us-west-2.amazonaws.com", "kms", "us-west-2"},
		{"secretsmanager.sa-east-1.amazonaws.com", "secretsmanager", "sa-east-1"},
		{"abc123defg.execute-api.eu-central-1.amazonaws.com", "execute-api", "eu-central-1"},
		{"bedrock-runtime.us-east-1.amazonaws.com", "bedrock", "us-east-1"},
		{"bedrock-runtime-fips.us-west-2.amazonaws.com", "bedrock", "us-west-2"},
		{"olap-123456789012.s3-object-lambda.us-east-1.amazonaws.com", "s3-object-lambda", "us-east-1"},
		{"ap-123456789012.op-01ac5d28a6a232904.s3-outposts.us-west-2.amazonaws.com", "s3-outposts", "us-west-2"},
		{"ec2.us-east-1.amazonaws.com", "", ""},                   // not a listed service: the rule says
		{"dynamodb.amazonaws.com", "", ""},                        // regional service without a region
		{"minio.internal", "", ""},                                // not AWS
		{"s3.amazonaws.com.evil.example", "", ""},                 // suffix, not AWS
		{"amazonaws.com", "", ""},                                 // no service
		{"bucket.s3.us-east-1.amazonaws.com.", "s3", "us-east-1"}, // trailing dot
	}
	for _, tt := range tests {
		s, r, err := endpoint(tt.host)
		if tt.service == "" {
			if !errors.Is(err, errUnknownEndpoint) {
				t.Errorf("endpoint(%q) = %q, %q, %v; want errUnknownEndpoint", tt.host, s, r, err)
			}
			continue
		}
		if err != nil || s != tt.service || r != tt.region {
			t.Errorf("endpoint(%q) = %q, %q, %v; want %q, %q", tt.host, s, r, err, tt.service, tt.region)
		}
	}
}

// The chunked-upload example of the S3 documentation ("Signature
// Calculations for the Authorization Header: Transferring Payload in
// Multiple Chunks"): 66560 bytes of 'a' in a 65536-byte and a 1024-byte
// chunk.
const (
	docSeed   = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
	docChunk1 = "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
	docChunk2 = "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
	docFinal  = "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
)

// chunkedBodyOf frames data as aws-chunked with the given chunk size and
// signatures (placeholders when sigs is short), with optional trailer
// lines.
func chunkedBodyOf(data []byte, size int, sigs []string, trailers []string) string {
	var b strings.Builder
	i := 0
	sig := func() string {
		if i < len(sigs) {
			i++
			return sigs[i-1]
		}
		return strings.Repeat("0", 64)
	}
	for len(data) > 0 {
		n := min(size, len(data))
		fmt.Fprintf(&b, "%x;chunk-signature=%s\r\n", n, sig())
		b.Write(data[:n])
		b.WriteString("\r\n")
		data = data[n:]
	}
	fmt.Fprintf(&b, "0;chunk-signature=%s\r\n", sig())
	if trailers != nil {
		for _, t := range trailers {
			b.WriteString(t + "\r\n")
		}
		fmt.Fprintf(&b, "x-amz-trailer-signature:%s\r\n", sig())
	}
	b.WriteString("\r\n")
	return b.String()
}

func TestChunkedDocExample(t *testing.T) {
	inj := load(t, "{}", time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC))
	cred := awsCred("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "")
	data := bytes.Repeat([]byte("a"), 66560)
	body := chunkedBodyOf(data, 65536, nil, nil) // the client's placeholder signatures
	r := httptest.NewRequest("PUT", "https://s3.amazonaws.com/examplebucket/chunkObject.txt", strings.NewReader(body))
	r.Header = http.Header{}
	r.Header.Set("X-Amz-Storage-Class", "REDUCED_REDUNDANCY")
	r.Header.Set("Content-Encoding", "aws-chunked")
	r.Header.Set("X-Amz-Decoded-Content-Length", "66560")
	r.Header.Set("X-Amz-Content-Sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
	r.ContentLength = int64(len(body))
	if r.ContentLength != 66824 {
		t.Fatalf("framing: content length %d, the example has 66824", r.ContentLength)
	}
	if err := inj.Inject(r, cred); err != nil {
		t.Fatal(err)
	}
	want := "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class, Signature=" + docSeed
	if diff := cmp.Diff(want, r.Header.Get("Authorization")); diff != "" {
		t.Errorf("seed (-want +got):\n%s", diff)
	}
	got, err := io.ReadAll(iotestOneByte(r.Body))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(chunkedBodyOf(data, 65536, []string{docChunk1, docChunk2, docFinal}, nil), string(got)); diff != "" {
		t.Errorf("re-signed body (-want +got):\n%.2000s", diff)
	}
}

// iotestOneByte reads in small odd pieces to exercise Read's buffering.
func iotestOneByte(r io.Reader) io.Reader { return &smallReader{r: r} }

type smallReader struct {
	r io.Reader
	n int
}

func (s *smallReader) Read(p []byte) (int, error) {
	s.n++
	k := 1 + s.n%7919
	if len(p) > k {
		p = p[:k]
	}
	return s.r.Read(p)
}

// TestChunkedTrailer checks the -TRAILER variant against an independent
// computation of the chained signatures (the string to sign of
// AWS4-HMAC-SHA256-TRAILER as MinIO and the S3 documentation define it).
func TestChunkedTrailer(t *testing.T) {
	now := time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC)
	inj := load(t, "{}", now)
	cred := awsCred("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "")
	data := bytes.Repeat([]byte("b"), 10000)
	trailers := []string{"x-amz-checksum-crc32c:sOO8/Q=="}
	body := chunkedBodyOf(data, 8192, nil, trailers)
	r := httptest.NewRequest("PUT", "https://bucket.s3.us-east-1.amazonaws.com/obj", strings.NewReader(body))
	r.Header = http.Header{}
	r.Header.Set("Content-Encoding", "aws-chunked")
	r.Header.Set("X-Amz-Trailer", "x-amz-checksum-crc32c")
	r.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(len(data)))
	r.Header.Set("X-Amz-Content-Sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
	r.ContentLength = int64(len(body))
	if err := inj.Inject(r, cred); err != nil {
		t.Fatal(err)
	}
	auth := r.Header.Get("Authorization")
	seed := auth[strings.LastIndex(auth, "=")+1:]
	// Independent computation.
	key := signingKey("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1", "s3")
	scope := "20130524/us-east-1/s3/aws4_request"
	prev := seed
	var sigs []string
	for _, chunk := range [][]byte{data[:8192], data[8192:], nil} {
		sts := "AWS4-HMAC-SHA256-PAYLOAD\n20130524T000000Z\n" + scope + "\n" + prev + "\n" + emptySHA256 + "\n" + sha256Hex(chunk)
		prev = fmt.Sprintf("%x", hmacSHA256(key, sts))
		sigs = append(sigs, prev)
	}
	sts := "AWS4-HMAC-SHA256-TRAILER\n20130524T000000Z\n" + scope + "\n" + prev + "\n" + sha256Hex([]byte(trailers[0]+"\n"))
	sigs = append(sigs, fmt.Sprintf("%x", hmacSHA256(key, sts)))

	got, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := chunkedBodyOf(data, 8192, sigs, trailers)
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("re-signed body (-want +got):\n%.2000s", diff)
	}
	if len(got) != len(body) {
		t.Errorf("length changed: %d, was %d", len(got), len(body))
	}
}

func sha256Hex(b []byte) string {
	sum := sha256Sum(b)
	return fmt.Sprintf("%x", sum)
}

func TestChunkedErrors(t *testing.T) {
	inj := load(t, "{max_chunk_size: 100}", suiteTime)
	cred := awsCred("AKID", "SECRET", "")
	tests := []struct {
		name, body string
		want       error
	}{
		{"chunk over the cap", chunkedBodyOf(make([]byte, 200), 200, nil, nil), injectors.ErrBodyTooLarge},
		{"no signature", "10\r\n", errMalformedChunk},
		{"bad size", "zz;chunk-signature=" + strings.Repeat("0", 64) + "\r\n", errMalformedChunk},
		{"truncated", "10;chunk-signature=" + strings.Repeat("0", 64) + "\r\nabc", io.ErrUnexpectedEOF},
		{"long line", strings.Repeat("1", 10000), errMalformedChunk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("PUT", "https://s3.amazonaws.com/b/k", strings.NewReader(tt.body))
			r.Header.Set("X-Amz-Content-Sha256", streamingPayload)
			if err := inj.Inject(r, cred); err != nil {
				t.Fatal(err)
			}
			_, err := io.ReadAll(r.Body)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestPayloadModes(t *testing.T) {
	cred := awsCred("AKID", "SECRET", "TOKEN")
	hash := sha256Hex([]byte("hello"))
	tests := []struct {
		name, settings, url, declared, body string
		wantHash                            string // signed payload hash, as sent to S3 or as computed
		wantErr                             error
	}{
		{name: "s3 without declaration: unsigned", url: "https://s3.amazonaws.com/b/k", body: "hello", wantHash: "UNSIGNED-PAYLOAD"},
		{name: "s3 declared hash kept", url: "https://s3.amazonaws.com/b/k", declared: hash, body: "hello", wantHash: hash},
		{name: "s3 unsigned declared", url: "https://s3.amazonaws.com/b/k", declared: "UNSIGNED-PAYLOAD", body: "hello", wantHash: "UNSIGNED-PAYLOAD"},
		{name: "s3 streaming unsigned trailer", url: "https://s3.amazonaws.com/b/k", declared: "STREAMING-UNSIGNED-PAYLOAD-TRAILER", body: "5\r\nhello\r\n0\r\n\r\n", wantHash: "STREAMING-UNSIGNED-PAYLOAD-TRAILER"},
		{name: "s3 hashed when unsigned_payload is off", settings: "{unsigned_payload: false}", url: "https://s3.amazonaws.com/b/k", body: "hello", wantHash: hash},
		{name: "sigv4a refused", url: "https://s3.amazonaws.com/b/k", declared: "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", body: "x", wantErr: injectors.ErrUnsupportedRequest},
		{name: "streaming to sts refused", url: "https://sts.amazonaws.com/", declared: streamingPayload, body: "x", wantErr: injectors.ErrUnsupportedRequest},
		{name: "sts body hashed", url: "https://sts.amazonaws.com/", body: "hello", wantHash: hash},
		{name: "sts unsigned declaration ignored", url: "https://sts.amazonaws.com/", declared: "UNSIGNED-PAYLOAD", body: "hello", wantHash: hash},
		{name: "sts body over the cap", settings: "{max_hashed_body: 4}", url: "https://sts.amazonaws.com/", body: "hello", wantErr: injectors.ErrBodyTooLarge},
		{name: "presigned refused", url: "https://s3.amazonaws.com/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00", wantErr: injectors.ErrUnsupportedRequest},
		{name: "presigned, percent-encoded, refused", url: "https://s3.amazonaws.com/b/k?X%2DAmz%2DCredential=x", wantErr: injectors.ErrUnsupportedRequest},
		{name: "custom host without settings", url: "https://minio.internal:9000/b/k", wantErr: errUnknownEndpoint},
		{name: "custom host with settings", settings: "{service: s3, region: us-east-1}", url: "https://minio.internal:9000/b/k", body: "hello", wantHash: "UNSIGNED-PAYLOAD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			settings := tt.settings
			if settings == "" {
				settings = "{}"
			}
			inj := load(t, settings, suiteTime)
			r := httptest.NewRequest("PUT", tt.url, strings.NewReader(tt.body))
			if tt.body == "" {
				r.Body, r.ContentLength = http.NoBody, 0
			}
			if tt.declared != "" {
				r.Header.Set("X-Amz-Content-Sha256", tt.declared)
			}
			before := r.Header.Clone()
			err := inj.Inject(r, cred)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if diff := cmp.Diff(before, r.Header); diff != "" {
					t.Errorf("a failed Inject changed the headers (-before +after):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			isS3 := strings.Contains(tt.url, "s3") || strings.Contains(tt.settings, "s3")
			if got := r.Header.Get("X-Amz-Content-Sha256"); isS3 && got != tt.wantHash {
				t.Errorf("X-Amz-Content-Sha256 = %q, want %q", got, tt.wantHash)
			} else if !isS3 && got != "" {
				t.Errorf("X-Amz-Content-Sha256 = %q sent to a service other than s3", got)
			}
			if got := r.Header.Get("X-Amz-Security-Token"); got != "TOKEN" {
				t.Errorf("session token = %q", got)
			}
			b, _ := io.ReadAll(r.Body)
			if string(b) != tt.body {
				t.Errorf("body = %q, want %q", b, tt.body)
			}
		})
	}
}

// TestVaultFieldNames: the field names of Vault's AWS engine work too.
func TestVaultFieldNames(t *testing.T) {
	cred := &providers.Credential{Fields: map[string]providers.Secret{
		"access_key": providers.NewSecret("AKID"), "secret_key": providers.NewSecret("SECRET"), "security_token": providers.NewSecret("TOK"),
	}}
	inj := load(t, "{}", suiteTime)
	r := httptest.NewRequest("GET", "https://sqs.eu-west-1.amazonaws.com/", nil)
	if err := inj.Inject(r, cred); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKID/20150830/eu-west-1/sqs/aws4_request,") {
		t.Errorf("Authorization = %q", r.Header.Get("Authorization"))
	}
	if _, err := injectors.Load(context.Background(), "sigv4", nil); err != nil {
		t.Fatal(err)
	}
	err := inj.Inject(httptest.NewRequest("GET", "https://sqs.eu-west-1.amazonaws.com/", nil), &providers.Credential{})
	if !errors.Is(err, injectors.ErrMissingField) {
		t.Errorf("no fields: err = %v", err)
	}
}

// TestNoSecretInErrors: errors name fields and settings, never the
// secret key or session token.
func TestNoSecretInErrors(t *testing.T) {
	secret, token := "NO_LEAK_secret_key_value", "NO_LEAK_session_token_value"
	cred := awsCred("AKID", secret, token)
	var errs []error
	for _, tc := range []struct{ settings, url, declared, body string }{
		{"{max_hashed_body: 1}", "https://sts.amazonaws.com/", "", "hello"},
		{"{}", "https://s3.amazonaws.com/b?X-Amz-Signature=" + token, "", ""},
		{"{}", "https://s3.amazonaws.com/b", secret, "x"},
		{"{}", "https://example.org/", "", ""},
		{"{max_chunk_size: 1}", "https://s3.amazonaws.com/b", streamingPayload, chunkedBodyOf([]byte("hello"), 5, nil, nil)},
		{"{}", "https://s3.amazonaws.com/b", streamingPayload, "junk " + secret + "\r\n"},
	} {
		inj := load(t, tc.settings, suiteTime)
		r := httptest.NewRequest("PUT", tc.url, strings.NewReader(tc.body))
		if tc.declared != "" {
			r.Header.Set("X-Amz-Content-Sha256", tc.declared)
		}
		err := inj.Inject(r, cred)
		if err == nil {
			_, err = io.ReadAll(r.Body)
		}
		if err == nil {
			t.Fatalf("%+v: no error", tc)
		}
		errs = append(errs, err)
	}
	errs = append(errs, inj2err(cred))
	for _, err := range errs {
		s := fmt.Sprintf("%v %+v %#v", err, err, err)
		if strings.Contains(s, "NO_LEAK") {
			t.Errorf("error leaks a secret: %s", s)
		}
	}
	if s := fmt.Sprintf("%v %+v %#v", cred, *cred, cred.Fields); strings.Contains(s, "NO_LEAK") {
		t.Errorf("credential prints a secret: %s", s)
	}
}

func inj2err(cred *providers.Credential) error {
	s := &Injector{AccessKeyField: "nope"}
	_ = s.Provision()
	return s.Inject(httptest.NewRequest("GET", "https://sts.amazonaws.com/", nil), cred)
}

// BenchmarkInject signs a small S3 GET with a session token, as the
// gateway does per request (target: well under 15 µs).
func BenchmarkInject(b *testing.B) {
	inj := load(b, "{}", suiteTime)
	cred := awsCred("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "FwoGZXIvYXdzEXAMPLESESSIONTOKEN")
	base := httptest.NewRequest("GET", "https://bucket.s3.eu-west-1.amazonaws.com/some/key.json?versionId=3", nil)
	base.Header.Set("User-Agent", "aws-sdk-go-v2/1.0")
	base.Header.Set("Accept-Encoding", "identity")
	b.ReportAllocs()
	for b.Loop() {
		r := base.Clone(base.Context())
		if err := inj.Inject(r, cred); err != nil {
			b.Fatal(err)
		}
	}
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
