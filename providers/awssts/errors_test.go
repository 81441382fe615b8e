package awssts

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"

	"github.com/credgate/credgate/providers"
)

// TestSTSErrorCodes: what STS answers decides what the client sees. A
// throttled, failing or overloaded STS (the codes the SDK's retryer
// retries, STS's IDPCommunicationError, any 5xx or 429) is unavailable:
// retried with backoff, then 503 credential_unavailable with Retry-After.
// A refusal (a denied role, bad caller keys, a malformed policy, a bad
// web identity token) is not retried and is 502 credential_error: waiting
// does not fix it.
func TestSTSErrorCodes(t *testing.T) {
	type answer struct {
		status int
		code   string
	}
	unavailable := []answer{
		// STS's documented throttling answer: HTTP 400, Throttling, "Rate exceeded".
		{400, "Throttling"},
		{400, "ThrottlingException"},
		{400, "RequestLimitExceeded"},
		{429, "TooManyRequestsException"},
		{429, "SomethingNew"}, // any 429
		{400, "IDPCommunicationError"},
		{400, "RequestTimeout"},
		{500, "InternalFailure"},
		{503, "ServiceUnavailable"},
		{502, "BadGateway"},
		{504, "GatewayTimeout"},
	}
	// Every code the SDK's retryer treats as throttling, whatever the status.
	for code := range retry.DefaultThrottleErrorCodes {
		unavailable = append(unavailable, answer{400, code})
	}
	refused := []answer{
		{403, "AccessDenied"},
		{403, "InvalidClientTokenId"},
		{403, "SignatureDoesNotMatch"},
		{400, "ExpiredTokenException"},
		{400, "MalformedPolicyDocument"},
		{400, "PackedPolicyTooLarge"},
		{403, "RegionDisabledException"},
		{400, "InvalidIdentityToken"},
		{403, "IDPRejectedClaim"},
		{400, "ValidationError"},
		{400, "InvalidParameterValue"},
	}
	type tc struct {
		answer
		unavailable bool
	}
	var cases []tc
	for _, a := range unavailable {
		cases = append(cases, tc{a, true})
	}
	for _, a := range refused {
		cases = append(cases, tc{a, false})
	}
	slices.SortFunc(cases, func(a, b tc) int { return compareAnswers(a.code, b.code, a.status, b.status) })
	cases = slices.CompactFunc(cases, func(a, b tc) bool { return a.answer == b.answer })
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d %s", c.status, c.code), func(t *testing.T) {
			sts := newFakeSTS(t, time.Now)
			sts.fail = func(int) (int, string) { return c.status, c.code }
			p := load(t, fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: %s, source_credential: src, retries: 1}", sts.URL),
				map[string]providers.Provider{"src": staticSource{cred: sourceCred()}})
			_, err := p.Fetch(context.Background(), providers.Request{Workload: billing()})
			if err == nil {
				t.Fatal("Fetch succeeded against a failing STS")
			}
			if got := errors.Is(err, providers.ErrUnavailable); got != c.unavailable {
				t.Errorf("unavailable (503) = %v, want %v: %v", got, c.unavailable, err)
			}
			wantCalls := int64(1)
			if c.unavailable {
				wantCalls = 2 // retried once (retries: 1)
			}
			if got := sts.n.Load(); got != wantCalls {
				t.Errorf("%d STS calls, want %d", got, wantCalls)
			}
		})
	}
}

func compareAnswers(a, b string, sa, sb int) int {
	if a != b {
		if a < b {
			return -1
		}
		return 1
	}
	return sa - sb
}

// TestThrottlingThroughTheCache: a throttled STS makes the cache remember
// the failure for its error backoff only (the gateway's Retry-After),
// asks STS again after it, and serves the new credential as soon as STS
// answers; a credential still cached is served throughout.
func TestThrottlingThroughTheCache(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	var throttled sync.Mutex // held while STS throttles
	var throttling bool
	setThrottling := func(on bool) { throttled.Lock(); throttling = on; throttled.Unlock() }
	sts := newFakeSTS(t, clock)
	sts.fail = func(int) (int, string) {
		throttled.Lock()
		defer throttled.Unlock()
		if throttling {
			return 400, "Throttling"
		}
		return 0, ""
	}
	p := load(t, fmt.Sprintf("{role_arn: 'arn:aws:iam::1:role/r', endpoint: %s, source_credential: src, retries: 0}", sts.URL),
		map[string]providers.Provider{"src": staticSource{cred: sourceCred()}})
	p.now = clock // STS's clock is the gateway's here
	const backoff = 5 * time.Second
	cache := providers.NewCache(providers.CacheOptions{Now: clock, RefreshAhead: time.Minute, ErrorBackoff: backoff})
	t.Cleanup(cache.Close)
	req := providers.Request{Credential: "aws", Workload: billing()}
	key := providers.CacheKey{Credential: "aws", Scope: p.CacheScope(req), Provider: "awssts"}
	get := func() (string, error) {
		c, _, err := cache.Get(context.Background(), key, func(ctx context.Context) (*providers.Credential, error) { return p.Fetch(ctx, req) })
		if err != nil {
			return "", err
		}
		v, _ := c.Field(providers.FieldAccessKeyID)
		return v.Reveal(), nil
	}

	if got, err := get(); err != nil || got != "ASIAFAKE1" {
		t.Fatalf("first Get: %q, %v", got, err)
	}
	// Throttled from now on. The credential lives 15 minutes: the
	// refresh ahead fails, the cached one is served until it expires.
	setThrottling(true)
	advance(14*time.Minute + 30*time.Second)
	if got, err := get(); err != nil || got != "ASIAFAKE1" {
		t.Fatalf("Get during a failing refresh: %q, %v; want the cached credential", got, err)
	}
	waitFor(t, func() bool { return sts.n.Load() >= 2 })
	advance(time.Minute) // expired
	_, err := get()
	if !errors.Is(err, providers.ErrUnavailable) {
		t.Fatalf("Get after expiry while throttled: %v, want ErrUnavailable (503)", err)
	}
	ra, ok := providers.RetryAfter(err, clock())
	if !ok || ra <= 0 || ra > backoff {
		t.Fatalf("Retry-After %s (%v), want within the error backoff %s", ra, ok, backoff)
	}
	// Within the backoff: the failure is remembered, STS is not asked.
	// (The Get above may have joined the failing refresh still in flight
	// or made a call of its own; either way it has returned.)
	calls := sts.n.Load()
	advance(ra / 2)
	if _, err := get(); !errors.Is(err, providers.ErrUnavailable) {
		t.Fatalf("Get within the backoff: %v", err)
	}
	if n := sts.n.Load(); n != calls {
		t.Errorf("%d STS calls within the backoff, want none", n-calls)
	}
	// STS answers again; after the backoff the next Get asks it and
	// succeeds: nothing is latched beyond error_backoff.
	setThrottling(false)
	advance(ra)
	if got, err := get(); err != nil || got == "ASIAFAKE1" {
		t.Fatalf("Get after the backoff with STS back: %q, %v; want a new credential", got, err)
	}
}
