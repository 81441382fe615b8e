package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/credgate/credgate/internal/freeport"
)

// The SPIRE trust domain of the e2e test and the SPIFFE IDs it registers.
const (
	spireTD       = "credgate.e2e"
	spireNode     = "spiffe://" + spireTD + "/node"
	spireGateway  = "spiffe://" + spireTD + "/credgate"
	spireBilling  = "spiffe://" + spireTD + "/billing"
	spireIntruder = "spiffe://" + spireTD + "/intruder"
	// spireGatewayTTL is the lifetime of the gateway's X.509-SVID: short,
	// so that the agent rotates it (at half-life) while the test runs.
	spireGatewayTTL = 20 * time.Second
)

// spirePolicy: billing-strong (X.509-SVID and a JWT-SVID of billing) may
// reach the payments API; billing (its X.509-SVID alone) only the api;
// intruder has a SPIFFE ID of the same trust domain and no rule.
const spirePolicy = `
workloads:
  billing-strong:
    spiffe: ` + spireBilling + `
    require: [mtls, jwt]
  billing:
    spiffe: ` + spireBilling + `
    require: [mtls]
  intruder:
    spiffe: ` + spireIntruder + `
    require: [mtls]
destinations:
  api:
    hosts: [api.origin.test]
    allow_private: true
  payments:
    hosts: [other.origin.test]
    allow_private: true
credentials:
  api-token:
    provider: static
    env: CREDGATE_E2E_TOKEN
rules:
  - {name: billing-api, from: billing, to: api, inject: {credential: api-token, as: bearer}}
  - {name: billing-strong-api, from: billing-strong, to: api, inject: {credential: api-token, as: bearer}}
  - {name: billing-payments, from: billing-strong, to: payments, inject: {credential: api-token, as: bearer}}
default: deny
`

// spire is a running SPIRE server and agent on 127.0.0.1 and unix sockets.
type spire struct {
	dir          string
	serverSock   string // the server's admin API
	agentSock    string // the Workload API, as a unix:// address
	serverBin    string
	agentBin     string
	version      string
	parentID     string
	serverOutput *syncBuffer
	agentOutput  *syncBuffer
}

// spireBinaries returns the paths scripts/spire.sh builds, or skips the
// test saying how to build them.
func spireBinaries(t *testing.T) (server, agent string) {
	t.Helper()
	bin, err := toolsBin()
	if err != nil {
		t.Skip(err)
	}
	server, agent = filepath.Join(bin, "spire-server"), filepath.Join(bin, "spire-agent")
	for _, p := range []string{server, agent} {
		if _, err := os.Stat(p); err != nil {
			reportPeer(t, "spire: none (%s missing: run bash scripts/spire.sh); test skipped", p)
			t.Skipf("SPIRE not built: %v (run bash scripts/spire.sh, or make tools)", err)
		}
	}
	return server, agent
}

// startSPIRE starts a SPIRE server (sqlite datastore, in-memory keys,
// join_token node attestation) and an agent attested with a join token
// (unix workload attestor, workload paths discovered), and waits until
// the agent is up.
func startSPIRE(t *testing.T) *spire {
	t.Helper()
	serverBin, agentBin := spireBinaries(t)
	// Unix socket paths are limited to about 100 bytes: a short directory.
	dir, err := os.MkdirTemp("", "spire")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s := &spire{dir: dir, serverSock: filepath.Join(dir, "server.sock"), agentSock: "unix://" + filepath.Join(dir, "agent.sock"),
		serverBin: serverBin, agentBin: agentBin, version: minioVersionDep(serverBin, "github.com/spiffe/spire"),
		parentID: spireNode, serverOutput: &syncBuffer{}, agentOutput: &syncBuffer{}}
	port := freeport.Get(t)
	serverConf := fmt.Sprintf(`server {
    bind_address = "127.0.0.1"
    bind_port = "%d"
    socket_path = %q
    trust_domain = %q
    data_dir = %q
    log_level = "INFO"
    default_x509_svid_ttl = "1h"
}
plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = %q
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
}
`, port, s.serverSock, spireTD, filepath.Join(dir, "server-data"), filepath.Join(dir, "server-data", "datastore.sqlite3"))
	writeFileT(t, filepath.Join(dir, "server.conf"), serverConf)
	s.start(t, "spire-server", serverBin, s.serverOutput, "run", "-config", filepath.Join(dir, "server.conf"))
	waitFor(t, 60*time.Second, "spire-server healthcheck", func() error {
		_, err := s.server(t, "healthcheck", "-shallow")
		return err
	})

	bundle, err := s.server(t, "bundle", "show", "-format", "pem")
	if err != nil {
		t.Fatal(err)
	}
	writeFileT(t, filepath.Join(dir, "bootstrap.pem"), bundle)
	out, err := s.server(t, "token", "generate", "-spiffeID", spireNode, "-ttl", "600")
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "Token:"))
	agentConf := fmt.Sprintf(`agent {
    data_dir = %q
    log_level = "INFO"
    server_address = "127.0.0.1"
    server_port = "%d"
    socket_path = %q
    trust_bundle_path = %q
    trust_domain = %q
    join_token = %q
}
plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {
            discover_workload_path = true
            workload_size_limit = -1
        }
    }
}
`, filepath.Join(dir, "agent-data"), port, strings.TrimPrefix(s.agentSock, "unix://"), filepath.Join(dir, "bootstrap.pem"), spireTD, token)
	writeFileT(t, filepath.Join(dir, "agent.conf"), agentConf)
	s.start(t, "spire-agent", agentBin, s.agentOutput, "run", "-config", filepath.Join(dir, "agent.conf"))
	waitFor(t, 60*time.Second, "spire-agent healthcheck", func() error {
		out, err := exec.Command(agentBin, "healthcheck", "-shallow", "-socketPath", strings.TrimPrefix(s.agentSock, "unix://")).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	reportPeer(t, "spire: real SPIRE %s server and agent (join_token, unix workload attestor, sqlite) on 127.0.0.1:%d and %s", s.version, port, s.agentSock)
	return s
}

func writeFileT(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// start runs one SPIRE process until the test ends.
func (s *spire) start(t *testing.T, name, bin string, out *syncBuffer, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = s.dir
	cmd.Env = gatewayEnv("")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(out.String(), 40))
		}
	})
}

// server runs a spire-server CLI command against the server's admin
// socket and returns its output.
func (s *spire) server(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args = append(args, "-socketPath", s.serverSock)
	out, err := exec.CommandContext(ctx, s.serverBin, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("spire-server %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// register creates a registration entry for processes of this user run
// from the executable at path.
func (s *spire) register(t *testing.T, spiffeID, path string, extra ...string) {
	t.Helper()
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"entry", "create", "-parentID", s.parentID, "-spiffeID", spiffeID,
		"-selector", "unix:uid:" + strconv.Itoa(os.Getuid()), "-selector", "unix:path:" + real}, extra...)
	if _, err := s.server(t, args...); err != nil {
		t.Fatal(err)
	}
}

// minioVersionDep is the version of module mod in a Go binary.
func minioVersionDep(bin, mod string) string {
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		return "(version unknown)"
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && (f[0] == "dep" || f[0] == "mod") && f[1] == mod {
			return f[2]
		}
	}
	return "(version unknown)"
}

// TestSPIRE runs the mtls factor against a real SPIRE: the gateway gets its
// own X.509-SVID and the trust bundle from the agent's Workload API and
// serves the SVID on its HTTPS proxy listener; clients present X.509-SVIDs
// (and JWT-SVIDs) the same agent issued to this test process. A rule for
// the client's SPIFFE ID allows, another SPIFFE ID is denied, a rule
// requiring two factors allows only when both verify and agree, and the
// gateway's SVID rotates without a restart.
func TestSPIRE(t *testing.T) {
	t.Parallel()
	sp := startSPIRE(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sp.register(t, spireGateway, binPath, "-dns", "localhost", "-x509SVIDTTL", strconv.Itoa(int(spireGatewayTTL/time.Second)))
	sp.register(t, spireBilling, self)
	sp.register(t, spireIntruder, self)

	// This test process is a workload: its SVIDs come from the agent.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wl, err := workloadapi.New(ctx, workloadapi.WithAddr(sp.agentSock))
	if err != nil {
		t.Fatal(err)
	}
	defer wl.Close()
	var svids map[string]*x509svid.SVID
	waitFor(t, 60*time.Second, "this process's X.509-SVIDs from the Workload API", func() error {
		fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
		defer fcancel()
		list, err := wl.FetchX509SVIDs(fctx)
		if err != nil {
			return err
		}
		svids = map[string]*x509svid.SVID{}
		for _, s := range list {
			svids[s.ID.String()] = s
		}
		if svids[spireBilling] == nil || svids[spireIntruder] == nil {
			return fmt.Errorf("have %d SVIDs, want billing and intruder", len(list))
		}
		return nil
	})
	jwtSVID := func(t *testing.T, id string) string {
		t.Helper()
		s, err := wl.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "credgate", Subject: spiffeid.RequireFromString(id)})
		if err != nil {
			t.Fatalf("FetchJWTSVID %s: %v", id, err)
		}
		return s.Marshal()
	}
	// The gateway verifies JWT-SVIDs against the trust domain's JWT keys,
	// written as the JWKS file the docs describe.
	jwtBundles, err := wl.FetchJWTBundles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := jwtBundles.GetJWTBundleForTrustDomain(spiffeid.RequireTrustDomainFromString(spireTD))
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := jb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	jwksFile := filepath.Join(sp.dir, "jwt-bundle.json")
	writeFileT(t, jwksFile, string(jwks))
	x509Bundles, err := wl.FetchX509Bundles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	xb, err := x509Bundles.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString(spireTD))
	if err != nil {
		t.Fatal(err)
	}
	bundlePEM, err := xb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	bundleFile := filepath.Join(sp.dir, "bundle.pem")
	writeFileT(t, bundleFile, string(bundlePEM))

	adminTokFile, adminTok := writeAdminToken(t, t.TempDir())
	e := startEnv(t, envOptions{Policy: spirePolicy, ExtraConfig: fmt.Sprintf(`tls_listen: 127.0.0.1:0
admin: {token_file: %q}
tls:
  svid: true
identity:
  mtls:
    workload_api:
      socket: %q
      spiffe_id: %q
      start_timeout: 15s
    require_spiffe: true
    trust_domains: [%s]
  jwt:
    issuers:
      - profile: spiffe
        trust_domain: %s
        audiences: [credgate]
        jwks_file: %q
`, adminTokFile, sp.agentSock, spireGateway, spireTD, spireTD, jwksFile)})
	_, tlsPort, _ := net.SplitHostPort(e.tlsProxyAddr)

	// The listener serves the gateway's SVID, verified the SPIFFE way.
	firstSVID := gatewaySVIDServed(t, e, x509Bundles)

	writeSVID := func(id string) (certFile, keyFile string) {
		certPEM, keyPEM, err := svids[id].Marshal()
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(id, "spiffe://"+spireTD+"/")
		certFile, keyFile = filepath.Join(sp.dir, name+".pem"), filepath.Join(sp.dir, name+"-key.pem")
		writeFileT(t, certFile, string(certPEM))
		writeFileT(t, keyFile, string(keyPEM))
		return certFile, keyFile
	}
	billingCert, billingKey := writeSVID(spireBilling)
	intruderCert, intruderKey := writeSVID(spireIntruder)
	billingJWT, intruderJWT := jwtSVID(t, spireBilling), jwtSVID(t, spireIntruder)
	e.secrets = append(e.secrets, billingJWT, intruderJWT)

	// curl, as any application: the SPIRE bundle verifies the proxy's SVID
	// (issued for DNS name localhost), the SVID files are the client
	// certificate, the JWT-SVID goes in Proxy-Authorization.
	curlSPIRE := func(t *testing.T, cert, key, token, url string) (status, connect int, stderr string) {
		t.Helper()
		args := []string{"-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code} %{http_connect}",
			"--proxy", "https://localhost:" + tlsPort, "--proxy-cacert", bundleFile,
			"--proxy-cert", cert, "--proxy-key", key, "--cacert", gwCACert, url}
		if token != "" {
			args = append(args, "--proxy-header", "Proxy-Authorization: Bearer "+token)
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		cmd := exec.CommandContext(cctx, "curl", args...)
		cmd.Env = clientEnv("")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		_ = cmd.Run()
		fmt.Sscanf(out.String(), "%d %d", &status, &connect)
		return status, connect, errb.String()
	}
	for _, tc := range []struct {
		name        string
		cert, key   string
		token       string
		host        string
		wantStatus  int // of the request; 0: the CONNECT is refused with wantConnect
		wantConnect int
		wantAudit   string // regexp
	}{
		{"svid-allowed", billingCert, billingKey, "", apiHost, 200, 0, `"workload":"billing","factors":\["source","mtls"\],[^}]*"path":"/spire/svid-allowed","rule":"billing-api","decision":"inject"`},
		{"svid-no-rule", billingCert, billingKey, "", otherHost, 0, 403, `"workload":"billing","factors":\["source","mtls"\],[^}]*"method":"CONNECT","scheme":"https","host":"other\.origin\.test"[^}]*"code":"no_rule"`},
		{"other-svid-denied", intruderCert, intruderKey, "", apiHost, 0, 403, `"workload":"intruder","factors":\["source","mtls"\],[^}]*"code":"no_rule"`},
		{"two-factors-agree", billingCert, billingKey, billingJWT, otherHost, 200, 0, `"workload":"billing-strong","factors":\["source","mtls","jwt"\],[^}]*"path":"/spire/two-factors-agree","rule":"billing-payments"`},
		{"two-factors-conflict", billingCert, billingKey, intruderJWT, otherHost, 0, 403, `"code":"factor_conflict"`},
		{"forged-jwt", billingCert, billingKey, forgeJWT(billingJWT), otherHost, 0, 403, `"code":"identity_invalid"`},
	} {
		t.Run("curl-"+tc.name, func(t *testing.T) {
			path := "/spire/" + tc.name
			status, connect, stderr := curlSPIRE(t, tc.cert, tc.key, tc.token, "https://"+tc.host+path)
			switch {
			case tc.wantStatus != 0 && status != tc.wantStatus:
				t.Errorf("status %d, want %d: %s", status, tc.wantStatus, stderr)
			case tc.wantStatus == 0 && (status == 200 || connect != tc.wantConnect):
				t.Errorf("status %d, CONNECT %d; want the CONNECT refused with %d", status, connect, tc.wantConnect)
			}
			if tc.wantStatus == 200 && e.origin.one(t, path).Header.Get("Authorization") != "Bearer "+e.token {
				t.Errorf("credential not injected")
			}
			if tc.wantStatus == 0 && len(e.origin.byPath(path)) != 0 {
				t.Errorf("a refused request reached the origin")
			}
			re := regexp.MustCompile(tc.wantAudit)
			waitFor(t, 5*time.Second, "audit line "+tc.wantAudit, func() error {
				if !re.MatchString(e.stdout.String()) {
					return errors.New("not yet")
				}
				return nil
			})
		})
	}

	// A Go client takes everything from the Workload API: it presents its
	// X.509-SVID, checks the gateway's SPIFFE ID (not a host name), and
	// sends its JWT-SVID.
	t.Run("go-client-two-factors", func(t *testing.T) {
		source, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(sp.agentSock)),
			workloadapi.WithDefaultX509SVIDPicker(func(list []*x509svid.SVID) *x509svid.SVID {
				for _, s := range list {
					if s.ID.String() == spireBilling {
						return s
					}
				}
				return list[0]
			}))
		if err != nil {
			t.Fatal(err)
		}
		defer source.Close()
		proxyTLS := tlsconfig.MTLSClientConfig(source, source, tlsconfig.AuthorizeID(spiffeid.RequireFromString(spireGateway)))
		var d net.Dialer
		tr := &http.Transport{
			Proxy: http.ProxyURL(&url.URL{Scheme: "https", Host: e.tlsProxyAddr}),
			DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				raw, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				c := tls.Client(raw, proxyTLS)
				if err := c.HandshakeContext(ctx); err != nil {
					raw.Close()
					return nil, err
				}
				return c, nil
			},
			TLSClientConfig:    &tls.Config{RootCAs: gwCAPool},
			ProxyConnectHeader: http.Header{"Proxy-Authorization": {"Bearer " + jwtSVID(t, spireBilling)}},
		}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Get("https://" + otherHost + "/spire/go-client")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || e.origin.one(t, "/spire/go-client").Header.Get("Authorization") != "Bearer "+e.token {
			t.Errorf("status %s", resp.Status)
		}
	})

	// explain, run as the same binary, gets the bundle from the agent too.
	t.Run("explain", func(t *testing.T) {
		out, code := runCLI(t, 60*time.Second, nil, "explain", "-c", e.configPath, "--cert", billingCert, "GET", "https://"+apiHost+"/v1/x")
		if code != 0 || !strings.Contains(out, "billing (verified: source=127.0.0.1, mtls="+spireBilling) || !strings.Contains(out, "billing-api") {
			t.Errorf("explain: exit %d\n%s", code, out)
		}
	})

	// Rotation: the agent renews the gateway's short-lived SVID at half
	// its life; the listener serves the new one without a restart.
	t.Run("rotation", func(t *testing.T) {
		waitFor(t, 3*spireGatewayTTL, "a rotated gateway SVID on the listener", func() error {
			if now := gatewaySVIDServed(t, e, x509Bundles); now.Equal(firstSVID) {
				return fmt.Errorf("still serving serial %s", firstSVID.SerialNumber)
			}
			return nil
		})
		if n := e.metric(t, "credgate_svid_rotations_total"); n < 1 {
			t.Errorf("credgate_svid_rotations_total = %v, want >= 1", n)
		}
		if exp := e.metric(t, "credgate_svid_expiry_timestamp_seconds"); time.Unix(int64(exp), 0).Before(firstSVID.NotAfter) {
			t.Errorf("credgate_svid_expiry_timestamp_seconds %v is not after the first SVID's expiry", exp)
		}
		if status, _, stderr := curlSPIRE(t, billingCert, billingKey, "", "https://"+apiHost+"/spire/after-rotation"); status != 200 {
			t.Errorf("after rotation: status %d: %s", status, stderr)
		}
		e.waitLog(t, `"msg":"SPIFFE Workload API: X.509-SVID rotated"`)
	})
	req, err := http.NewRequest(http.MethodGet, "http://"+e.adminAddr+"/readyz", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !regexp.MustCompile(`"svid":\{"spiffe_id":"`+regexp.QuoteMeta(spireGateway)+`","expires":"[^"]+","held":true\}`).Match(body) {
		t.Errorf("/readyz: %s %s", resp.Status, body)
	}
}

// gatewaySVIDServed does a TLS handshake with the gateway's HTTPS proxy
// listener, verifying its certificate as an X.509-SVID of the gateway's
// SPIFFE ID against the SPIRE bundles, and returns it.
func gatewaySVIDServed(t *testing.T, e *env, bundles x509bundle.Source) *x509.Certificate {
	t.Helper()
	var got *x509.Certificate
	cfg := tlsconfig.TLSClientConfig(bundles, tlsconfig.AuthorizeID(spiffeid.RequireFromString(spireGateway)))
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.tlsProxyAddr, cfg)
	if err != nil {
		t.Fatalf("TLS handshake with the gateway's listener: %v", err)
	}
	defer c.Close()
	got = c.ConnectionState().PeerCertificates[0]
	return got
}

// forgeJWT keeps a token's header and claims and replaces its signature.
func forgeJWT(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return token
	}
	sig := []byte(parts[2])
	for i := range sig {
		if sig[i] == 'A' {
			sig[i] = 'B'
		} else {
			sig[i] = 'A'
		}
	}
	return parts[0] + "." + parts[1] + "." + string(sig)
}

// TestWorkloadAPIUnreachableAtStart: with no agent behind the configured
// socket, `credgate serve` waits start_timeout and exits non-zero saying
// what to check. It needs no SPIRE binaries.
func TestWorkloadAPIUnreachableAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, origin: startOrigin(t), token: randomToken(t),
		configPath: filepath.Join(dir, "credgate.yaml"), policyPath: filepath.Join(dir, "policy.yaml")}
	sock := "unix://" + filepath.Join(dir, "no-agent.sock")
	e.writeConfig(envOptions{ExtraConfig: fmt.Sprintf("tls_listen: 127.0.0.1:0\ntls: {svid: true}\nidentity:\n  mtls:\n    workload_api: {socket: %q, start_timeout: 2s}\n", sock)})
	e.writePolicy("", envOptions{})
	start := time.Now()
	out, code := runCLI(t, 60*time.Second, gatewayEnv(e.token), "serve", "-c", e.configPath)
	if code == 0 {
		t.Fatalf("serve: exit 0 without an agent\n%s", out)
	}
	for _, want := range []string{"identity.mtls.workload_api", "cannot reach the agent", "is the SPIRE agent running", sock, "start_timeout 2s"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve output lacks %q:\n%s", want, out)
		}
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("serve took %s to give up with start_timeout 2s", d)
	}
}
