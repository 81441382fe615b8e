package awssts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/fakekit"
	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/providers"
)

// fakeSTS answers AssumeRole and AssumeRoleWithWebIdentity like STS's
// query protocol, recording each call. fail, when set, answers instead.
type fakeSTS struct {
	*httptest.Server
	now func() time.Time

	mu    sync.Mutex
	calls []url.Values
	auth  []string
	fail  func(n int) (status int, code string) // n counts calls from 1
	// date, when set, gives the answers' Date header ("": none) instead
	// of now's.
	date func() string
	n    atomic.Int64
	// life, when set, is the Expiration stated (fakekit.Lifetime.Instant
	// as the element's text; absent leaves the element out).
	life fakekit.LifetimeOverride
}

func newFakeSTS(t *testing.T, now func() time.Time) *fakeSTS {
	f := &fakeSTS{now: now}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeSTS) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	n := int(f.n.Add(1))
	f.mu.Lock()
	f.calls = append(f.calls, r.PostForm)
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	fail := f.fail
	f.mu.Unlock()
	if fail != nil {
		if status, code := fail(n); status != 0 {
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(status)
			fmt.Fprintf(w, `<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s happened</Message></Error><RequestId>req-%d</RequestId></ErrorResponse>`, code, code, n)
			return
		}
	}
	action := r.PostForm.Get("Action")
	switch {
	case f.date != nil:
		if d := f.date(); d == "" {
			w.Header()["Date"] = nil // net/http sends none
		} else {
			w.Header().Set("Date", d)
		}
	default:
		w.Header().Set("Date", f.now().UTC().Format(http.TimeFormat)) // the server's clock
	}
	exp := "<Expiration>" + f.now().Add(15*time.Minute).UTC().Format(time.RFC3339) + "</Expiration>"
	if l, ok := f.life.Get(); ok {
		exp = ""
		if v, ok := l.Instant(f.now()); ok {
			if l.Raw == "" {
				v, _ = strconv.Unquote(v)
			}
			exp = "<Expiration>" + v + "</Expiration>"
		}
	}
	fmt.Fprintf(w, `<%sResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><%sResult><Credentials>
<AccessKeyId>ASIAFAKE%d</AccessKeyId><SecretAccessKey>NO_LEAK_issued_secret_%d</SecretAccessKey><SessionToken>NO_LEAK_issued_token_%d</SessionToken>%s
</Credentials></%sResult><ResponseMetadata><RequestId>req-%d</RequestId></ResponseMetadata></%sResponse>`,
		action, action, n, n, n, exp, action, n, action)
}

func (f *fakeSTS) call(i int) (url.Values, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[i], f.auth[i]
}

// staticSource is a source credential provider.
type staticSource struct {
	cred *providers.Credential
	err  error
}

func (s staticSource) Fetch(context.Context, providers.Request) (*providers.Credential, error) {
	return s.cred, s.err
}

func sourceCred() *providers.Credential {
	return &providers.Credential{Fields: map[string]providers.Secret{
		providers.FieldAccessKeyID:     providers.NewSecret("AKIASOURCE"),
		providers.FieldSecretAccessKey: providers.NewSecret("NO_LEAK_source_secret"),
	}}
}

// load builds an awssts provider from YAML as a policy would, with a
// zero retry backoff.
func load(t *testing.T, settings string, inputs map[string]providers.Provider) *Provider {
	t.Helper()
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(settings), &node); err != nil {
		t.Fatal(err)
	}
	p := new(Provider)
	if err := node.Content[0].Decode(p); err != nil {
		t.Fatal(err)
	}
	p.backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := p.Provision(context.Background()); err != nil {
		t.Fatal(err)
	}
	if inputs != nil {
		p.SetInputs(inputs)
	}
	return p
}

func billing() identity.Workload {
	return identity.Workload{Name: "billing/api", Factors: []identity.Factor{
		{Kind: "jwt", Attributes: map[string]string{"namespace": "billing", "service_account": "api", "team": "payments"}},
	}}
}

func TestAssumeRolePerWorkload(t *testing.T) {
	now := time.Now()
	sts := newFakeSTS(t, func() time.Time { return now })
	p := load(t, fmt.Sprintf(`
role_arn: arn:aws:iam::123456789012:role/billing-s3
endpoint: %s
source_credential: aws-source
source_identity: "{{.workload.namespace}}"
session_tags: {team: team, workload: name}
transitive_tag_keys: [team]
session_policy: '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}'
external_id: ext-42
duration: 20m
`, sts.URL), map[string]providers.Provider{"aws-source": staticSource{cred: sourceCred()}})
	if got := p.Inputs(); !cmp.Equal(got, []string{"aws-source"}) {
		t.Errorf("Inputs = %q", got)
	}
	cred, err := p.Fetch(context.Background(), providers.Request{Credential: "aws", Workload: billing()})
	if err != nil {
		t.Fatal(err)
	}
	form, auth := sts.call(0)
	want := map[string]string{
		"Action":                     "AssumeRole",
		"RoleArn":                    "arn:aws:iam::123456789012:role/billing-s3",
		"RoleSessionName":            "credgate-billing-api",
		"SourceIdentity":             "billing",
		"Tags.member.1.Key":          "team",
		"Tags.member.1.Value":        "payments",
		"Tags.member.2.Key":          "workload",
		"Tags.member.2.Value":        "billing/api",
		"TransitiveTagKeys.member.1": "team",
		"ExternalId":                 "ext-42",
		"DurationSeconds":            "1200",
		"Policy":                     `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`,
	}
	got := map[string]string{}
	for k := range want {
		got[k] = form.Get(k)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("AssumeRole parameters (-want +got):\n%s", diff)
	}
	if !strings.Contains(auth, "Credential=AKIASOURCE/") {
		t.Errorf("AssumeRole was not signed with the source credential: %q", auth)
	}
	if v, _ := cred.Field(providers.FieldAccessKeyID); v.Reveal() != "ASIAFAKE1" {
		t.Errorf("access key id = %q", v.Reveal())
	}
	if v, _ := cred.Field(providers.FieldSessionToken); v.Reveal() != "NO_LEAK_issued_token_1" {
		t.Errorf("session token not returned")
	}
	if d := cred.Expiry.Sub(now); d < 14*time.Minute || d > 16*time.Minute {
		t.Errorf("expiry %v, want about 15m from now", cred.Expiry)
	}
}

func TestCacheScope(t *testing.T) {
	p := load(t, "{role_arn: 'arn:aws:iam::1:role/r', session_tags: {team: team}}", nil)
	a := p.CacheScope(providers.Request{Workload: billing()})
	other := billing()
	other.Factors[0].Attributes = map[string]string{"team": "risk"}
	b := p.CacheScope(providers.Request{Workload: other})
	renamed := billing()
	renamed.Name = "billing/worker"
	c := p.CacheScope(providers.Request{Workload: renamed})
	if a == b || a == c || b == c {
		t.Errorf("workloads share a cache scope: %q %q %q", a, b, c)
	}
	if a != p.CacheScope(providers.Request{Workload: billing()}) {
		t.Errorf("the same workload has two scopes")
	}
}

func TestSanitizeSessionName(t *testing.T) {
	for in, want := range map[string]string{
		"credgate-billing":         "credgate-billing",
		"credgate-ns/sa:x y":       "credgate-ns-sa-x-y",
		"a":                        "a-",
		"spiffe://x.org/ns/a/sa/b": "spiffe---x.org-ns-a-sa-b",
		"ok+=,.@-_":                "ok+=,.@-_",
		strings.Repeat("é", 40):    strings.Repeat("-", 40),
		strings.Repeat("x", 100):   strings.Repeat("x", 47) + "-" + hexSHA256(strings.Repeat("x", 100))[:16],
	} {
		if got := sanitizeSessionName(in); got != want {
			t.Errorf("sanitizeSessionName(%q) = %q, want %q", in, got, want)
		}
	}
}

func hexSHA256(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

func TestMissingAttribute(t *testing.T) {
	sts := newFakeSTS(t, time.Now)
	p := load(t, fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: %s, session_tags: {cost: cost_center}}", sts.URL), nil)
	_, err := p.Fetch(context.Background(), providers.Request{Workload: billing()})
	if !errors.Is(err, ErrWorkloadAttribute) || sts.n.Load() != 0 {
		t.Errorf("err = %v after %d calls; want ErrWorkloadAttribute and no STS call", err, sts.n.Load())
	}
	p = load(t, fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: %s, session_tags: {team: team}}", sts.URL), nil)
	bad := billing()
	bad.Factors[0].Attributes["team"] = "pay<ments>"
	if _, err := p.Fetch(context.Background(), providers.Request{Workload: bad}); !errors.Is(err, ErrWorkloadAttribute) {
		t.Errorf("a tag value outside STS's charset: err = %v", err)
	}
}

func TestRetriesAndFailures(t *testing.T) {
	tests := []struct {
		name        string
		fail        func(n int) (int, string)
		wantCalls   int64
		unavailable bool
		ok          bool
	}{
		{"5xx then success", func(n int) (int, string) {
			if n <= 2 {
				return 503, "ServiceUnavailable"
			}
			return 0, ""
		}, 3, false, true},
		{"throttled throughout", func(int) (int, string) { return 400, "Throttling" }, 4, true, false},
		{"access denied is not retried", func(int) (int, string) { return 403, "AccessDenied" }, 1, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sts := newFakeSTS(t, time.Now)
			sts.fail = tt.fail
			p := load(t, fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: %s, source_credential: src}", sts.URL),
				map[string]providers.Provider{"src": staticSource{cred: sourceCred()}})
			_, err := p.Fetch(context.Background(), providers.Request{Workload: billing()})
			if tt.ok != (err == nil) || errors.Is(err, providers.ErrUnavailable) != tt.unavailable {
				t.Errorf("err = %v; want ok=%v unavailable=%v", err, tt.ok, tt.unavailable)
			}
			if got := sts.n.Load(); got != tt.wantCalls {
				t.Errorf("%d STS calls, want %d", got, tt.wantCalls)
			}
		})
	}
	// STS unreachable.
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	p := load(t, fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: %s, source_credential: src, retries: 0}", addr),
		map[string]providers.Provider{"src": staticSource{cred: sourceCred()}})
	if _, err := p.Fetch(context.Background(), providers.Request{Workload: billing()}); !errors.Is(err, providers.ErrUnavailable) {
		t.Errorf("unreachable STS: err = %v, want ErrUnavailable", err)
	}
}

func TestWebIdentity(t *testing.T) {
	sts := newFakeSTS(t, time.Now)
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("NO_LEAK_web_identity_jwt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := load(t, fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: %s, web_identity_token_file: %s}", sts.URL, tok), nil)
	if _, err := p.Fetch(context.Background(), providers.Request{Workload: billing()}); err != nil {
		t.Fatal(err)
	}
	form, auth := sts.call(0)
	if form.Get("Action") != "AssumeRoleWithWebIdentity" || form.Get("WebIdentityToken") != "NO_LEAK_web_identity_jwt" || form.Get("RoleSessionName") != "credgate-billing-api" {
		t.Errorf("form = %v", form)
	}
	if auth != "" {
		t.Errorf("AssumeRoleWithWebIdentity was signed: %q", auth)
	}
}

// TestRefreshAheadWithFakeClock: credentials that live 15 minutes (STS's
// and MinIO's minimum) are refreshed by the cache before they expire, and
// no Get fails meanwhile.
func TestRefreshAheadWithFakeClock(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	sts := newFakeSTS(t, clock)
	p := load(t, fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: %s, source_credential: src}", sts.URL),
		map[string]providers.Provider{"src": staticSource{cred: sourceCred()}})
	p.now = clock
	cache := providers.NewCache(providers.CacheOptions{Now: clock, RefreshAhead: time.Minute})
	t.Cleanup(cache.Close)
	req := providers.Request{Credential: "aws", Workload: billing()}
	key := providers.CacheKey{Credential: "aws", Scope: p.CacheScope(req), Provider: "awssts"}
	get := func() string {
		t.Helper()
		c, _, err := cache.Get(context.Background(), key, func(ctx context.Context) (*providers.Credential, error) { return p.Fetch(ctx, req) })
		if err != nil {
			t.Fatalf("Get at %s: %v", clock().Format(time.TimeOnly), err)
		}
		v, _ := c.Field(providers.FieldAccessKeyID)
		return v.Reveal()
	}
	if got := get(); got != "ASIAFAKE1" {
		t.Fatalf("first credential %s", got)
	}
	advance(10 * time.Minute)
	if got := get(); got != "ASIAFAKE1" || sts.n.Load() != 1 {
		t.Fatalf("at 10m: %s after %d calls, want the cached one", got, sts.n.Load())
	}
	advance(4*time.Minute + 30*time.Second) // within a minute of expiry
	if got := get(); got != "ASIAFAKE1" {
		t.Fatalf("refresh-ahead Get returned %s, want the still valid one", got)
	}
	waitFor(t, func() bool { return sts.n.Load() >= 2 })
	waitFor(t, func() bool { return get() == "ASIAFAKE2" })
	advance(time.Minute) // past the first credential's expiry
	if got := get(); got != "ASIAFAKE2" {
		t.Errorf("after expiry: %s", got)
	}
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	poll.True(t, 10*time.Second, "the condition", cond)
}

func TestValidate(t *testing.T) {
	for _, s := range []string{
		"{role_arn: nope}",
		"{role_arn: 'arn:aws:iam::1:role/r', duration: 1m}",
		"{role_arn: 'arn:aws:iam::1:role/r', web_identity_token_file: /t, session_tags: {a: b}}",
		"{role_arn: 'arn:aws:iam::1:role/r', web_identity_token_file: /t, source_credential: x}",
		"{role_arn: 'arn:aws:iam::1:role/r', session_name: '{{.workload.name | printf}}'}",
	} {
		var node yaml.Node
		if err := yaml.Unmarshal([]byte(s), &node); err != nil {
			t.Fatal(err)
		}
		if _, err := providers.Load(context.Background(), "awssts", node.Content[0]); err == nil {
			t.Errorf("%s: loaded, want an error", s)
		}
	}
}

// TestNoSecretInErrors: the source keys, issued keys and web identity
// token never appear in an error, whatever failed.
func TestNoSecretInErrors(t *testing.T) {
	sts := newFakeSTS(t, time.Now)
	var errs []error
	record := func(err error) {
		if err == nil {
			t.Fatal("no error")
		}
		errs = append(errs, err)
	}
	req := providers.Request{Workload: billing()}
	sts.fail = func(int) (int, string) { return 403, "AccessDenied" }
	p := load(t, fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: %s, source_credential: src}", sts.URL),
		map[string]providers.Provider{"src": staticSource{cred: sourceCred()}})
	_, err := p.Fetch(context.Background(), req)
	record(err)
	half := &providers.Credential{Fields: map[string]providers.Secret{providers.FieldSecretAccessKey: providers.NewSecret("NO_LEAK_half")}}
	p.SetInputs(map[string]providers.Provider{"src": staticSource{cred: half}})
	_, err = p.Fetch(context.Background(), req)
	record(err)
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("NO_LEAK_jwt"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := load(t, fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: %s, web_identity_token_file: %s}", sts.URL, tok), nil)
	_, err = w.Fetch(context.Background(), req)
	record(err)
	w = load(t, fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: %s, web_identity_token_file: %s}", sts.URL, tok+"-missing"), nil)
	_, err = w.Fetch(context.Background(), req)
	record(err)
	sts.fail = nil
	p.SetInputs(map[string]providers.Provider{"src": staticSource{cred: sourceCred()}})
	cred, err := p.Fetch(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range errs {
		if s := fmt.Sprintf("%v %+v %#v", err, err, err); strings.Contains(s, "NO_LEAK") {
			t.Errorf("error leaks a secret: %s", s)
		}
	}
	if s := fmt.Sprintf("%v %+v %#v", cred, *cred, cred.Fields); strings.Contains(s, "NO_LEAK") {
		t.Errorf("credential prints a secret: %s", s)
	}
}

// TestWebIdentityFromWorkload: the caller's own verified token is the web
// identity; sessions are cached per token; a caller without one fails.
func TestWebIdentityFromWorkload(t *testing.T) {
	sts := newFakeSTS(t, time.Now)
	p := load(t, fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: %s, web_identity_from: jwt}", sts.URL), nil)
	w := billing()
	w.Factors = append(w.Factors, identity.Factor{Kind: identity.KindJWT, Subject: "system:serviceaccount:billing:api",
		Token: identity.NewToken("NO_LEAK_caller_jwt_1")})
	if _, err := p.Fetch(context.Background(), providers.Request{Workload: w}); err != nil {
		t.Fatal(err)
	}
	form, auth := sts.call(0)
	if form.Get("Action") != "AssumeRoleWithWebIdentity" || form.Get("WebIdentityToken") != "NO_LEAK_caller_jwt_1" || auth != "" {
		t.Errorf("form = %v, auth %q: want an unsigned AssumeRoleWithWebIdentity with the caller's token", form, auth)
	}
	w2 := billing()
	w2.Factors = append(w2.Factors, identity.Factor{Kind: identity.KindJWT, Token: identity.NewToken("NO_LEAK_caller_jwt_2")})
	s1, s2 := p.CacheScope(providers.Request{Workload: w}), p.CacheScope(providers.Request{Workload: w2})
	if s1 == s2 || strings.Contains(s1, "NO_LEAK") {
		t.Errorf("cache scopes %q and %q: want one per token, without the token", s1, s2)
	}
	_, err := p.Fetch(context.Background(), providers.Request{Workload: billing()})
	if err == nil || !strings.Contains(err.Error(), "no verified jwt token") {
		t.Errorf("caller without a token: %v", err)
	}
	bad := &Provider{RoleARN: "arn:aws:iam::1:role/r", WebIdentityFrom: "header"}
	if err := bad.Validate(); err == nil {
		t.Errorf("web_identity_from: header validated")
	}
}
