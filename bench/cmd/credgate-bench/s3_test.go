//go:build linux

package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The STS shim relays an answer with its Expiration shortened to stsTTL
// and notes the secret values; while throttling it answers STS's
// throttling error and 503 in turn, without calling STS.
func TestSTSShim(t *testing.T) {
	var calls int
	var host string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		host = r.Host
		io.WriteString(w, `<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>AKIA1</AccessKeyId><SecretAccessKey>shim-secret</SecretAccessKey><SessionToken>shim-token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>`)
	}))
	defer upstream.Close()
	target, _ := url.Parse(upstream.URL)
	shim := &stsShim{target: target, transport: &http.Transport{Proxy: nil}}
	srv := httptest.NewServer(shim)
	defer srv.Close()
	post := func() (int, string) {
		t.Helper()
		resp, err := http.Post(srv.URL, "application/x-www-form-urlencoded", strings.NewReader("Action=AssumeRole"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	before := time.Now()
	code, body := post()
	if code != http.StatusOK || strings.Contains(body, "2099") {
		t.Fatalf("relayed %d %s; want 200 with a shortened Expiration", code, body)
	}
	if until := shim.validUntil(); until.Before(before.Add(stsTTL-time.Second)) || until.After(time.Now().Add(stsTTL)) {
		t.Errorf("valid until %s, want about %s from now", until, stsTTL)
	}
	if host != strings.TrimPrefix(srv.URL, "http://") {
		t.Errorf("upstream saw Host %q, want the signed one %q", host, strings.TrimPrefix(srv.URL, "http://"))
	}
	if got := strings.Join(shim.issued(), ","); got != "shim-secret,shim-token" {
		t.Errorf("issued secrets %q", got)
	}

	shim.throttle(true)
	if code, body := post(); code != http.StatusBadRequest || !strings.Contains(body, "<Code>Throttling</Code><Message>Rate exceeded</Message>") {
		t.Errorf("first throttled answer %d %s, want STS's 400 Throttling", code, body)
	}
	if code, body := post(); code != http.StatusServiceUnavailable || !strings.Contains(body, "ServiceUnavailable") {
		t.Errorf("second throttled answer %d %s, want 503", code, body)
	}
	shim.throttle(false)
	if code, _ := post(); code != http.StatusOK {
		t.Errorf("after the throttling: %d", code)
	}
	relayed, throttled, unavail := shim.counts()
	if relayed != 2 || throttled != 1 || unavail != 1 || calls != 2 {
		t.Errorf("relayed %d, throttled %d, 503 %d, STS called %d times; want 2, 1, 1, 2", relayed, throttled, unavail, calls)
	}
}
