package providertest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// childEnv marks the copy of the test binary that checkNoProxy starts.
const childEnv = "CREDGATE_PROVIDERTEST_PROXY_CHILD"

// probeHost never resolves (RFC 2606): a client that honours the proxy
// environment hands it to the proxy; one that ignores it fails at DNS.
const probeHost = "proxy-probe.invalid"

// proxyVars are the variables a client library may take a proxy from.
var proxyVars = []string{"HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy", "VAULT_PROXY_ADDR", "VAULT_HTTP_PROXY"}

// checkNoProxy starts the test binary again, running only this subtest,
// with the proxy environment pointing at a listener here: net/http reads
// that environment once per process (http.ProxyFromEnvironment), so
// setting it with t.Setenv after any request of this process would not
// be seen by a transport that wrongly consults it.
func checkNoProxy(t *testing.T, c Conformance) {
	if os.Getenv(childEnv) != "" {
		noProxyChild(t, c)
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1) // before Close: the client sees the close after the count
			_ = conn.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })

	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("find the test binary: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run="+runPattern(t.Name()), "-test.count=1", "-test.v")
	proxy := "http://" + ln.Addr().String()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.EqualFold(k, "NO_PROXY") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for _, k := range proxyVars {
		cmd.Env = append(cmd.Env, k+"="+proxy)
	}
	cmd.Env = append(cmd.Env, childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("with the proxy environment set, the check failed (%v):\n%s", err, out)
	} else if !strings.Contains(string(out), "--- PASS: "+t.Name()+" ") {
		t.Errorf("the test binary started with the proxy environment did not run %s:\n%s", t.Name(), out)
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("the proxy named by HTTPS_PROXY/HTTP_PROXY/ALL_PROXY saw %d connection(s); a provider's traffic must go direct (build its client with internal/httpclient)", n)
	}
}

// noProxyChild runs in the test binary started by checkNoProxy.
func noProxyChild(t *testing.T, c Conformance) {
	p := load(t, c, c.Settings)
	if _, err := p.Fetch(t.Context(), c.Request); err != nil {
		t.Errorf("with HTTPS_PROXY set, Fetch did not reach the service directly: %v", err)
	}
	if c.Stalled == nil {
		return
	}
	probe := load(t, c, c.Stalled("https://"+probeHost))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := probe.Fetch(ctx, c.Request); err == nil {
		t.Errorf("Fetch from https://%s (a name that never resolves) succeeded: through a proxy?", probeHost)
	}
}

// runPattern is a -test.run pattern for exactly the (sub)test name.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}
