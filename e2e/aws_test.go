package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/injectors"
	_ "github.com/credgate/credgate/injectors/sigv4" // the direct upload's signer
	"github.com/credgate/credgate/internal/miniotest"
	"github.com/credgate/credgate/providers"
)

// minioHost is the name clients use for the MinIO server; the gateway's
// resolve map sends it to 127.0.0.1.
const minioHost = "minio.origin.test"

// minioServer is a real MinIO (S3 + STS, verifying SigV4 and aws-chunked
// signatures) on 127.0.0.1 with TLS, started by internal/miniotest with a
// certificate from the origin CA: User and Secret are the gateway's own
// AWS identity, which calls AssumeRole.
type minioServer struct {
	*miniotest.Server
	caFile string // the CA of its certificate (the origin CA)
}

// startMinIO runs the MinIO built by scripts/minio-tools.sh, or skips the
// test when it is not there.
func startMinIO(t *testing.T) *minioServer {
	t.Helper()
	if _, err := miniotest.Binary(); err != nil {
		reportPeer(t, "minio: none (%v); test skipped", err)
		t.Skipf("MinIO not built: %v", err)
	}
	var out syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := miniotest.Start(ctx, miniotest.Options{Dir: t.TempDir(), CA: originCA, Host: minioHost, Env: gatewayEnv(""), Output: &out})
	if err != nil {
		t.Fatalf("%v\nminio output:\n%s", err, tail(out.String(), 2000))
	}
	t.Cleanup(func() {
		s.Close()
		if t.Failed() {
			t.Logf("minio output:\n%s", tail(out.String(), 4000))
		}
	})
	reportPeer(t, "minio: real MinIO %s on 127.0.0.1:%d (TLS), STS AssumeRole as user %s created with madmin-go", s.Version, s.Port, s.User)
	return &minioServer{Server: s, caFile: originCACert}
}

func tlsConfigFor(pool *x509.CertPool) *tls.Config { return &tls.Config{RootCAs: pool} }

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

const awsPolicy = `
workloads:
  local:
    cidrs: [127.0.0.1/32]
    require: [source]
destinations:
  minio:
    hosts: [minio.origin.test]
    ports: [MINIO_PORT]
    allow_private: true
credentials:
  s3-session:
    provider: awssts
    role_arn: arn:aws:iam::000000000000:role/e2e
    endpoint: https://127.0.0.1:MINIO_PORT
    ca_file: MINIO_CA
    duration: 15m
  s3-readonly:
    provider: awssts
    role_arn: arn:aws:iam::000000000000:role/e2e
    endpoint: https://127.0.0.1:MINIO_PORT
    ca_file: MINIO_CA
    duration: 15m
    session_policy: '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::e2e-ro/*"]}]}'
rules:
  - name: s3-readonly
    from: local
    to: minio
    paths: [/e2e-ro/*]
    inject: {credential: s3-readonly, as: sigv4, service: s3, region: us-east-1}
  - name: s3-small
    from: local
    to: minio
    paths: [/e2e-bucket/small-*]
    inject: {credential: s3-session, as: sigv4, service: s3, region: us-east-1,
             max_chunk_size: 65536, max_hashed_body: 1024, unsigned_payload: false}
  - name: s3
    from: local
    to: minio
    paths: [/e2e-*]
    inject: {credential: s3-session, as: sigv4, service: s3, region: us-east-1}
default: deny
`

// TestAWSS3ThroughGateway: an application using the AWS SDK for Go v2
// with placeholder keys, the gateway as HTTPS proxy and the gateway's CA
// reaches a real MinIO; the gateway assumes a role on MinIO's STS and
// re-signs every request, including aws-chunked streaming uploads whose
// chunk signatures MinIO verifies.
func TestAWSS3ThroughGateway(t *testing.T) {
	t.Parallel()
	m := startMinIO(t)
	pol := strings.NewReplacer("MINIO_PORT", strconv.Itoa(m.Port), "MINIO_CA", m.caFile).Replace(awsPolicy)
	// The gateway's own AWS identity comes from the SDK's default chain:
	// here the environment, holding the MinIO user created with madmin.
	e := startEnv(t, envOptions{
		Policy:  pol,
		Resolve: map[string]string{minioHost + ":" + strconv.Itoa(m.Port): "127.0.0.1:" + strconv.Itoa(m.Port)},
		Env:     []string{"AWS_ACCESS_KEY_ID=" + m.User, "AWS_SECRET_ACCESS_KEY=" + m.Secret, "AWS_REGION=us-east-1"},
	})
	e.secrets = append(e.secrets, m.RootPassword, m.Secret)

	hc := newGoClient(t, e.proxyURL, gwCACert, false)
	endpoint := "https://" + minioHost + ":" + strconv.Itoa(m.Port)
	client := s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider("PLACEHOLDER", "PLACEHOLDER", ""),
		HTTPClient:   hc,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bucket := "e2e-bucket"

	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("CreateBucket: %v\ngateway log:\n%s", err, tail(e.stderr.String(), 3000))
	}
	body := bytes.Repeat([]byte("credgate "), 1000)
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("hello.txt"), Body: bytes.NewReader(body)}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	got, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("hello.txt")})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	b, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if !bytes.Equal(b, body) {
		t.Errorf("GetObject returned %d bytes, want the %d put", len(b), len(body))
	}

	// Multipart upload: two parts (5 MiB minimum for all but the last).
	mp, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String("multi.bin")})
	if err != nil {
		t.Fatalf("CreateMultipartUpload: %v", err)
	}
	part1 := bytes.Repeat([]byte{'1'}, 5<<20)
	part2 := []byte("the last part")
	var parts []s3types.CompletedPart
	for i, p := range [][]byte{part1, part2} {
		up, err := client.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String("multi.bin"),
			UploadId: mp.UploadId, PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(p)})
		if err != nil {
			t.Fatalf("UploadPart %d: %v", i+1, err)
		}
		parts = append(parts, s3types.CompletedPart{ETag: up.ETag, PartNumber: aws.Int32(int32(i + 1)), ChecksumCRC32: up.ChecksumCRC32})
	}
	if _, err := client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String("multi.bin"),
		UploadId: mp.UploadId, MultipartUpload: &s3types.CompletedMultipartUpload{Parts: parts}}); err != nil {
		t.Fatalf("CompleteMultipartUpload: %v", err)
	}
	head, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("multi.bin")})
	if err != nil || aws.ToInt64(head.ContentLength) != int64(len(part1)+len(part2)) {
		t.Errorf("HeadObject multi.bin: %v, length %d", err, aws.ToInt64(head.ContentLength))
	}

	// aws-chunked uploads signed chunk by chunk (the client's chunk
	// signatures are placeholders; MinIO checks the gateway's).
	for _, tc := range []struct {
		mode     string
		trailers bool
	}{{"STREAMING-AWS4-HMAC-SHA256-PAYLOAD", false}, {"STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", true}} {
		data := bytes.Repeat([]byte("0123456789abcdef"), (3<<20)/16+7) // 3 MiB + 112 bytes, 64 KiB chunks
		key := "chunked-" + strings.ToLower(tc.mode[len(tc.mode)-7:])
		status, respBody := chunkedPut(t, hc, endpoint+"/"+bucket+"/"+key, tc.mode, data, 64<<10, tc.trailers)
		if status != http.StatusOK {
			t.Fatalf("%s upload: %d %s", tc.mode, status, respBody)
		}
		o, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("GetObject %s: %v", key, err)
		}
		b, _ := io.ReadAll(o.Body)
		o.Body.Close()
		if !bytes.Equal(b, data) {
			t.Errorf("%s: read back %d bytes, want %d equal bytes", tc.mode, len(b), len(data))
		}
	}

	// Limits: a body that must be hashed, or an aws-chunked chunk, larger
	// than the rule allows is answered 413 and not stored.
	big := bytes.Repeat([]byte("x"), 4096)
	status, _ := chunkedPut(t, hc, endpoint+"/"+bucket+"/small-chunked", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", bytes.Repeat(big, 64), 128<<10, false)
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("chunk over max_chunk_size: status %d, want 413", status)
	}
	req, _ := http.NewRequest("PUT", endpoint+"/"+bucket+"/small-plain", bytes.NewReader(big))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=PLACEHOLDER/20990101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("X-Credgate-Reason") != "body_too_large" {
		t.Errorf("body over max_hashed_body: %d %q, want 413 body_too_large", resp.StatusCode, resp.Header.Get("X-Credgate-Reason"))
	}
	req, _ = http.NewRequest("PUT", endpoint+"/"+bucket+"/small-hashed", bytes.NewReader(big[:1000]))
	if resp, err = hc.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("hashed body under the cap: status %d", resp.StatusCode)
	}
	if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("small-hashed")}); err != nil {
		t.Errorf("DeleteObject small-hashed: %v", err)
	}

	list, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatalf("ListObjectsV2: %v", err)
	}
	var names []string
	for _, o := range list.Contents {
		names = append(names, aws.ToString(o.Key))
	}
	if want := "chunked-payload chunked-trailer hello.txt multi.bin"; strings.Join(names, " ") != want {
		t.Errorf("ListObjectsV2 = %q, want %q", names, want)
	}
	for _, k := range names {
		if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(k)}); err != nil {
			t.Errorf("DeleteObject %s: %v", k, err)
		}
	}

	// A session policy narrows the role: through the s3-readonly rule an
	// object can be read, not written (MinIO's own 403, not the gateway's).
	admin := m.RootS3()
	if _, err := admin.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("e2e-ro")}); err != nil {
		t.Fatalf("admin CreateBucket e2e-ro: %v", err)
	}
	if _, err := admin.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("e2e-ro"), Key: aws.String("report.csv"), Body: strings.NewReader("a,b\n")}); err != nil {
		t.Fatalf("admin PutObject: %v", err)
	}
	ro, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("e2e-ro"), Key: aws.String("report.csv")})
	if err != nil {
		t.Fatalf("GetObject through the read-only session: %v", err)
	}
	ro.Body.Close()
	_, err = client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("e2e-ro"), Key: aws.String("x"), Body: strings.NewReader("no")})
	var apiErr interface{ ErrorCode() string }
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "AccessDenied" {
		t.Errorf("PutObject through the read-only session: %v, want MinIO's AccessDenied", err)
	}

	// A bucket no rule names: 403 from the gateway, nothing forwarded.
	_, err = client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("other-bucket")})
	var re interface{ HTTPStatusCode() int }
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusForbidden {
		t.Errorf("CreateBucket other-bucket: %v, want 403", err)
	}
	resp, err = hc.Get(endpoint + "/other-bucket/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Credgate-Reason") == "" {
		t.Errorf("GET /other-bucket/x: %d reason %q, want 403 from the gateway", resp.StatusCode, resp.Header.Get("X-Credgate-Reason"))
	}
	// A presigned URL is refused with 400.
	resp, err = hc.Get(endpoint + "/" + bucket + "/hello.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Credgate-Reason") != "unsupported_request" {
		t.Errorf("presigned GET: %d %q, want 400 unsupported_request", resp.StatusCode, resp.Header.Get("X-Credgate-Reason"))
	}

	// A copy names its source in x-amz-copy-source, which the rule's
	// paths never judged (e2e-ro is readable through s3-session too):
	// refused with 403 copy_source_not_allowed, nothing copied.
	_, err = client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(bucket), Key: aws.String("copied.csv"), CopySource: aws.String("e2e-ro/report.csv")})
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusForbidden {
		t.Errorf("CopyObject from e2e-ro: %v, want 403 copy_source_not_allowed from the gateway", err)
	}
	if _, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("copied.csv")}); err == nil {
		t.Errorf("the refused CopyObject copied the object")
	}

	// curl --aws-sigv4 as a second client.
	if _, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command("curl", "-sS", "--fail-with-body", "--proxy", e.proxyURL, "--cacert", gwCACert,
			"--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "PLACEHOLDER:PLACEHOLDER",
			"-X", "PUT", "--data-binary", "from curl", endpoint+"/"+bucket+"/curl.txt").CombinedOutput()
		if err != nil {
			t.Errorf("curl --aws-sigv4 PUT: %v\n%s", err, out)
		}
		out, err = exec.Command("curl", "-sS", "--fail-with-body", "--proxy", e.proxyURL, "--cacert", gwCACert,
			"--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "PLACEHOLDER:PLACEHOLDER", endpoint+"/"+bucket+"/curl.txt").CombinedOutput()
		if err != nil || string(out) != "from curl" {
			t.Errorf("curl --aws-sigv4 GET: %v %q", err, out)
		}
		if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("curl.txt")}); err != nil {
			t.Errorf("DeleteObject curl.txt: %v", err)
		}
	}
	if _, err := client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Errorf("DeleteBucket: %v", err)
	}

	// One STS call per credential for all of the above: the sessions are
	// cached.
	if n := e.metric(t, `credgate_provider_fetch_duration_seconds_count{provider="awssts"}`); n != 2 {
		t.Errorf("awssts fetches: %v, want 2", n)
	}
	if n := e.metric(t, `credgate_provider_errors_total{provider="awssts"}`); n != 0 {
		t.Errorf("awssts errors: %v", n)
	}
	// Audit lines are flushed in batches: wait for the last ones.
	waitFor(t, 10*time.Second, "an audit line with the STS session for every S3 call", func() error {
		injected := 0
		for _, ev := range e.audit() {
			if strings.HasPrefix(ev.Credential, "s3-") && ev.Status/100 == 2 {
				injected++
			}
		}
		if injected < 15 {
			return fmt.Errorf("%d successful requests with the STS session in the audit log", injected)
		}
		return nil
	})
}

// chunkedPut uploads data as aws-chunked with chunk size n and
// placeholder signatures, as an SDK signing with placeholder keys would.
func chunkedPut(t *testing.T, hc *http.Client, url, mode string, data []byte, n int, trailers bool) (int, string) {
	t.Helper()
	var b bytes.Buffer
	zero := strings.Repeat("0", 64)
	for rest := data; len(rest) > 0; {
		k := min(n, len(rest))
		fmt.Fprintf(&b, "%x;chunk-signature=%s\r\n", k, zero)
		b.Write(rest[:k])
		b.WriteString("\r\n")
		rest = rest[k:]
	}
	fmt.Fprintf(&b, "0;chunk-signature=%s\r\n", zero)
	if trailers {
		sum := sha256.Sum256(data)
		fmt.Fprintf(&b, "x-amz-checksum-sha256:%s\r\n", b64(sum[:]))
		fmt.Fprintf(&b, "x-amz-trailer-signature:%s\r\n", zero)
	}
	b.WriteString("\r\n")
	req, err := http.NewRequest("PUT", url, &b)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Encoding", "aws-chunked")
	req.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(len(data)))
	req.Header.Set("X-Amz-Content-Sha256", mode)
	req.Header.Set("X-Amz-Date", time.Now().UTC().Format("20060102T150405Z"))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=PLACEHOLDER/20990101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature="+zero)
	if trailers {
		req.Header.Set("X-Amz-Trailer", "x-amz-checksum-sha256")
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("chunked PUT: %v", err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(rb)
}

// chunkedStream generates an aws-chunked body of size bytes in chunks of
// n with placeholder signatures, without holding it in memory.
type chunkedStream struct {
	left, n int
	buf     []byte // pending framing and data
	final   bool
	data    []byte
}

func newChunkedStream(size, n int) *chunkedStream {
	return &chunkedStream{left: size, n: n, data: bytes.Repeat([]byte("credgate"), n/8+1)[:n]}
}

// chunkedLength is the encoded length of size bytes in chunks of n.
func chunkedLength(size, n int) int64 {
	frame := func(k int) int64 {
		return int64(len(strconv.FormatInt(int64(k), 16)) + len(";chunk-signature=") + 64 + 2)
	}
	var total int64
	for left := size; left > 0; left -= min(n, left) {
		k := min(n, left)
		total += frame(k) + int64(k) + 2
	}
	return total + frame(0) + 2
}

func (c *chunkedStream) Read(p []byte) (int, error) {
	if len(c.buf) == 0 {
		switch {
		case c.left > 0:
			k := min(c.n, c.left)
			c.left -= k
			c.buf = fmt.Appendf(c.buf[:0], "%x;chunk-signature=%s\r\n", k, strings.Repeat("0", 64))
			c.buf = append(c.buf, c.data[:k]...)
			c.buf = append(c.buf, '\r', '\n')
		case !c.final:
			c.final = true
			c.buf = fmt.Appendf(c.buf[:0], "0;chunk-signature=%s\r\n\r\n", strings.Repeat("0", 64))
		default:
			return 0, io.EOF
		}
	}
	k := copy(p, c.buf)
	c.buf = c.buf[k:]
	return k, nil
}

// peakRSS returns the VmHWM (peak resident set) of a process, in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Skip("no VmHWM in /proc status")
	return 0
}

// TestAWSChunkedUploadMemory streams a large aws-chunked upload through
// the gateway to MinIO and the same upload direct to MinIO (signed by the
// sigv4 injector in the test process), and reports the throughput of both
// and the gateway's peak RSS, which must stay flat: the gateway holds one
// 64 KiB chunk at a time, not the body. The size is
// CREDGATE_E2E_AWS_UPLOAD_MIB (default 128; the figure is 1024).
func TestAWSChunkedUploadMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("large upload")
	}
	m := startMinIO(t)
	mib := 128
	if v, err := strconv.Atoi(os.Getenv("CREDGATE_E2E_AWS_UPLOAD_MIB")); err == nil && v > 0 {
		mib = v
	}
	size, chunk := mib<<20, 64<<10
	pol := strings.NewReplacer("MINIO_PORT", strconv.Itoa(m.Port), "MINIO_CA", m.caFile).Replace(awsPolicy)
	e := startEnv(t, envOptions{
		Policy:  pol,
		Resolve: map[string]string{minioHost + ":" + strconv.Itoa(m.Port): "127.0.0.1:" + strconv.Itoa(m.Port)},
		Env:     []string{"AWS_ACCESS_KEY_ID=" + m.User, "AWS_SECRET_ACCESS_KEY=" + m.Secret, "AWS_REGION=us-east-1"},
	})
	e.secrets = append(e.secrets, m.RootPassword, m.Secret)
	hc := newGoClient(t, e.proxyURL, gwCACert, false)
	hc.Timeout = 10 * time.Minute
	endpoint := "https://" + minioHost + ":" + strconv.Itoa(m.Port)
	client := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("PLACEHOLDER", "PLACEHOLDER", ""), HTTPClient: hc})
	ctx := context.Background()
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("e2e-large")}); err != nil {
		t.Fatalf("CreateBucket: %v", err)
	}
	put := func(c *http.Client, url string, sign func(*http.Request)) time.Duration {
		t.Helper()
		req, err := http.NewRequest("PUT", url, newChunkedStream(size, chunk))
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = chunkedLength(size, chunk)
		req.Header.Set("Content-Encoding", "aws-chunked")
		req.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(size))
		req.Header.Set("X-Amz-Content-Sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
		sign(req)
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("PUT %s: %v", url, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT %s: %d %s", url, resp.StatusCode, b)
		}
		return time.Since(start)
	}
	before := peakRSS(t, e.cmd.Process.Pid)
	through := put(hc, endpoint+"/e2e-large/through", func(*http.Request) {})
	peak := peakRSS(t, e.cmd.Process.Pid)

	// Direct: the same upload signed in this process with the real keys.
	inj, err := injectors.Load(context.Background(), "sigv4", yamlNode(t, "{service: s3, region: us-east-1}"))
	if err != nil {
		t.Fatal(err)
	}
	direct := &http.Client{Transport: &http.Transport{Proxy: nil, TLSClientConfig: tlsConfigFor(originCAPool)}, Timeout: 10 * time.Minute}
	directDur := put(direct, "https://127.0.0.1:"+strconv.Itoa(m.Port)+"/e2e-large/direct", func(r *http.Request) {
		cred := &providers.Credential{Fields: map[string]providers.Secret{
			providers.FieldAccessKeyID: providers.NewSecret(m.RootUser), providers.FieldSecretAccessKey: providers.NewSecret(m.RootPassword)}}
		if err := inj.Inject(r, cred); err != nil {
			t.Fatal(err)
		}
	})
	rate := func(d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }
	t.Logf("aws-chunked upload of %d MiB: through the gateway %.0f MiB/s, direct %.0f MiB/s (ratio %.2f); gateway peak RSS %.1f MiB before, %.1f MiB after",
		mib, rate(through), rate(directDur), directDur.Seconds()/through.Seconds(), float64(before)/(1<<20), float64(peak)/(1<<20))
	if grow := peak - before; grow > 64<<20 {
		t.Errorf("gateway peak RSS grew by %.1f MiB during a %d MiB upload; the body must be streamed", float64(grow)/(1<<20), mib)
	}
	for _, k := range []string{"through", "direct"} {
		if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("e2e-large"), Key: aws.String(k)}); err != nil {
			t.Errorf("DeleteObject %s: %v", k, err)
		}
	}
}

func yamlNode(t *testing.T, s string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(s), &n); err != nil {
		t.Fatal(err)
	}
	return n.Content[0]
}
