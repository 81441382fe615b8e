//go:build linux

package main

// The S3 leg of the soak's fault mode: a real MinIO (internal/miniotest)
// as an S3 origin that verifies every SigV4 signature, reached through a
// rule that injects an awssts credential with sigv4. The gateway assumes
// its role on MinIO's STS through stsShim, a small reverse proxy in this
// process that, during the "STS throttling" fault, answers as STS does
// when it throttles (HTTP 400 with the code Throttling, "Rate exceeded")
// and, every other call, 503 ServiceUnavailable, instead of relaying.
// STS sessions last at least 15 minutes, longer than a soak's fault
// window, so the shim shortens the Expiration it relays to stsTTL: the
// gateway then refreshes ahead and its cached credential runs out within
// a fault, which is what the clients must see (the keys themselves stay
// valid at MinIO for their 15 minutes).
//
// MinIO answers 403 to a request whose signature it cannot verify: an S3
// request answered 403 was forwarded without a valid credential.

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/credgate/credgate/bench/internal/loadgen"
	"github.com/credgate/credgate/internal/miniotest"
	"github.com/credgate/credgate/internal/testpki"
)

const (
	// s3Host is the name the soak's clients use for MinIO; the gateway's
	// resolve map sends it to 127.0.0.1.
	s3Host = "s3.origin.test"
	// s3Bucket is the bucket the S3 requests read and write.
	s3Bucket = "credgate-soak"
	// stsTTL is the lifetime the shim gives the STS credentials it relays.
	stsTTL = 12 * time.Second
)

// s3Env is MinIO and the STS shim in front of it.
type s3Env struct {
	minio *miniotest.Server
	shim  *stsShim
	srv   *http.Server
	// shimAddr is the shim's 127.0.0.1:port (the awssts endpoint).
	shimAddr string
	// early counts S3 requests refused 503 while the STS credential last
	// relayed was still valid (more than a second before its Expiration).
	mu    sync.Mutex
	early int64
	first string // the first early refusal, for diagnosis
}

// startS3 starts MinIO with a certificate from the origin CA (the gateway
// verifies it with the origin's ca_bundle), creates the bucket and starts
// the STS shim. Without the MinIO binary it returns nil and the reason.
func startS3(ctx context.Context, work string, ca *testpki.Authority, env []string) (*s3Env, string, error) {
	if _, err := miniotest.Binary(); err != nil {
		return nil, err.Error(), nil
	}
	dir := filepath.Join(work, "minio")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", fmt.Errorf("minio directory: %w", err)
	}
	logf, err := os.Create(filepath.Join(dir, "minio.log"))
	if err != nil {
		return nil, "", fmt.Errorf("minio log: %w", err)
	}
	m, err := miniotest.Start(ctx, miniotest.Options{Dir: dir, CA: ca, Host: s3Host, Env: env, Output: logf})
	if err != nil {
		logf.Close()
		return nil, "", fmt.Errorf("%w (log: %s)", err, logf.Name())
	}
	go func() { <-m.Done(); logf.Close() }()
	if err := m.MakeBucket(ctx, s3Bucket); err != nil {
		m.Close()
		return nil, "", err
	}
	target, _ := url.Parse(m.URL())
	shim := &stsShim{target: target, transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		m.Close()
		return nil, "", fmt.Errorf("sts shim: listen: %w", err)
	}
	e := &s3Env{minio: m, shim: shim, shimAddr: l.Addr().String(), srv: &http.Server{Handler: shim, ReadHeaderTimeout: 10 * time.Second}}
	go func() { _ = e.srv.Serve(l) }()
	return e, "", nil
}

func (e *s3Env) close() {
	_ = e.srv.Close()
	e.shim.transport.CloseIdleConnections()
	e.minio.Close()
}

// gatewayEnv is what the gateway's environment needs for the leg: the
// MinIO user's keys for the AWS SDK's default chain, and nothing else
// the chain could find first.
func (e *s3Env) gatewayEnv() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + e.minio.User, "AWS_SECRET_ACCESS_KEY=" + e.minio.Secret, "AWS_REGION=" + miniotest.Region,
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true"}
}

// secrets are the leg's secret values: MinIO's root password, the
// gateway user's secret key and every secret key and session token STS
// issued.
func (e *s3Env) secrets() []string {
	return append([]string{e.minio.RootPassword, e.minio.Secret}, e.shim.issued()...)
}

// policy adds the S3 destination, the awssts credential and the sigv4
// rule to the bench policy.
func (e *s3Env) policy(p string) string {
	p = strings.Replace(p, "rules:\n", fmt.Sprintf("rules:\n  - name: s3-inject\n    from: bench\n    to: s3\n    paths: [/%s/*]\n    inject: {credential: s3-session, as: sigv4, service: s3, region: %s}\n", s3Bucket, miniotest.Region), 1)
	p = strings.Replace(p, "destinations:\n", fmt.Sprintf("destinations:\n  s3:\n    hosts: [%s]\n    ports: [%d]\n    allow_private: true\n", s3Host, e.minio.Port), 1)
	return strings.Replace(p, "credentials:\n", fmt.Sprintf(`credentials:
  s3-session:
    provider: awssts
    role_arn: arn:aws:iam::000000000000:role/credgate-soak
    endpoint: http://%s
    duration: 15m
`, e.shimAddr), 1)
}

// resolve is the gateway's resolve entry for MinIO.
func (e *s3Env) resolve() map[string]string {
	return map[string]string{s3Host + ":" + strconv.Itoa(e.minio.Port): e.minio.Addr()}
}

// url is the URL of object key in the bucket, through the gateway.
func (e *s3Env) url(key string) string {
	return fmt.Sprintf("https://%s:%d/%s/%s", s3Host, e.minio.Port, s3Bucket, key)
}

// do sends one S3 request through the gateway, a PUT of a small object
// or (put false) a GET of it. A 503 is an error of its own class unless
// it says credential_unavailable and carries Retry-After; a 503 while the
// STS credential last relayed was still valid is counted as early.
func (e *s3Env) do(ctx context.Context, c *http.Client, key string, put bool) error {
	method, body := http.MethodGet, io.Reader(nil)
	if put {
		method, body = http.MethodPut, bytes.NewReader(s3Object)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.url(key), body)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return err
	}
	switch {
	case resp.StatusCode == http.StatusOK && !put && !bytes.Equal(b, s3Object):
		return fmt.Errorf("s3 get: %d bytes, not the object put", len(b))
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusServiceUnavailable:
		reason := resp.Header.Get("X-Credgate-Reason")
		if reason != "credential_unavailable" || resp.Header.Get("Retry-After") == "" {
			return fmt.Errorf("s3 503 with reason %q and Retry-After %q, want credential_unavailable and a Retry-After", reason, resp.Header.Get("Retry-After"))
		}
		if until := e.shim.validUntil(); time.Now().Before(until.Add(-time.Second)) {
			e.mu.Lock()
			e.early++
			if e.first == "" {
				e.first = fmt.Sprintf("at %s, %.1f s before the credential's Expiration", time.Now().UTC().Format(time.RFC3339Nano), time.Until(until).Seconds())
			}
			e.mu.Unlock()
		}
	}
	return &loadgen.StatusError{Code: resp.StatusCode, Reason: resp.Header.Get("X-Credgate-Reason"), Body: string(b)}
}

// s3Object is what the S3 requests put and get back.
var s3Object = bytes.Repeat([]byte("credgate-soak-s3\n"), 60)

// stsShim relays STS calls to MinIO, shortening the Expiration of the
// credentials it relays to stsTTL and noting their secret values; while
// throttling it answers instead, alternately STS's throttling error and
// 503.
type stsShim struct {
	target    *url.URL
	transport *http.Transport

	mu         sync.Mutex
	throttling bool
	relayed    int64 // calls relayed to MinIO
	throttled  int64 // answered 400 Throttling
	unavail    int64 // answered 503
	until      time.Time
	secrets    []string
}

// throttle starts (on) or ends the throttling.
func (s *stsShim) throttle(on bool) {
	s.mu.Lock()
	s.throttling = on
	s.mu.Unlock()
}

// counts returns the calls relayed, answered Throttling and answered 503.
func (s *stsShim) counts() (relayed, throttled, unavail int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.relayed, s.throttled, s.unavail
}

// validUntil is the latest Expiration the shim relayed.
func (s *stsShim) validUntil() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.until
}

// issued returns the secret keys and session tokens STS issued.
func (s *stsShim) issued() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.secrets...)
}

// The answers STS gives when it throttles (its documented error: HTTP
// 400, code Throttling, message "Rate exceeded") and when it is
// unavailable.
const (
	stsThrottlingBody  = `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>credgate-soak-%d</RequestId></ErrorResponse>`
	stsUnavailableBody = `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code><Message>Service is unable to handle request.</Message></Error><RequestId>credgate-soak-%d</RequestId></ErrorResponse>`
)

var (
	expirationRE = regexp.MustCompile(`<Expiration>[^<]*</Expiration>`)
	stsSecretRE  = regexp.MustCompile(`<(SecretAccessKey|SessionToken)>([^<]+)</`)
)

func (s *stsShim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	throttling := s.throttling
	var n int64
	if throttling {
		n = s.throttled + s.unavail + 1
		if n%2 == 1 {
			s.throttled++
		} else {
			s.unavail++
		}
	}
	s.mu.Unlock()
	if throttling {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 64<<10))
		w.Header().Set("Content-Type", "text/xml")
		if n%2 == 1 {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, stsThrottlingBody, n)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, stsUnavailableBody, n)
		return
	}
	rp := &httputil.ReverseProxy{
		Transport: s.transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(s.target)
			// The Host header is signed: MinIO must see the one the
			// gateway signed, the shim's.
			pr.Out.Host = pr.In.Host
		},
		ModifyResponse: s.relay,
	}
	rp.ServeHTTP(w, r)
}

// relay rewrites a successful STS answer's Expiration to stsTTL from now
// and notes its secret values.
func (s *stsShim) relay(resp *http.Response) error {
	s.mu.Lock()
	s.relayed++
	s.mu.Unlock()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return err
	}
	until := time.Now().Add(stsTTL).UTC()
	b = expirationRE.ReplaceAll(b, []byte("<Expiration>"+until.Format(time.RFC3339)+"</Expiration>"))
	s.mu.Lock()
	for _, m := range stsSecretRE.FindAllSubmatch(b, -1) {
		s.secrets = append(s.secrets, string(m[2]))
	}
	// RFC3339 drops the fraction: the credential expires at the second.
	s.until = until.Truncate(time.Second)
	s.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
	return nil
}

// earlyRefusals returns how many S3 requests were refused while their
// STS credential was still valid, and the first.
func (e *s3Env) earlyRefusals() (int64, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.early, e.first
}
