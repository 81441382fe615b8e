//go:build linux

package main

// The proxies users would pick instead of credgate (issue 20), measured in
// the same run as columns beside direct, goproxy and credgate:
//
//   - squid: Debian's squid-openssl 5.x with ssl-bump, adding the header
//     with request_header_add, verifying the origin with tls_outgoing_options;
//   - mitmproxy: mitmdump with a small addon that sets the header (and
//     dials the origin's real address, mitmproxy having no resolve map).
//
// Each is configured the way a careful operator would for this job: no
// cache, no access log, upstream TLS verified, keep-alive both ways. The
// origin answers 401 to a request without the injected header, so a peer
// that failed to add it counts as errors, not as speed.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/credgate/credgate/bench/internal/loadgen"
	"github.com/credgate/credgate/bench/internal/report"
	"github.com/credgate/credgate/internal/testpki"
)

// squidConfig is squid.conf for the bench. %s: listen address, CA cert,
// CA key, the ssl_db directory, the origin's CA, the token, the hosts
// file, the directory for logs and the pid file.
const squidConfig = `# credgate-bench: squid with ssl-bump, adding the bearer header.
http_port %s ssl-bump generate-host-certificates=on dynamic_cert_mem_cache_size=16MB tls-cert=%s tls-key=%s
sslcrtd_program /usr/lib/squid/security_file_certgen -s %s -M 16MB
sslcrtd_children 4 startup=2 idle=1
ssl_bump bump all
tls_outgoing_options cafile=%s
request_header_access Authorization deny all
request_header_add Authorization "Bearer %s" all
hosts_file %s
http_access allow all
cache deny all
cache_mem 8 MB
access_log none
cache_store_log none
logfile_rotate 0
cache_log %[8]s/cache.log
pid_filename %[8]s/squid.pid
coredump_dir %[8]s
workers 1
pinger_enable off
shutdown_lifetime 1 seconds
client_persistent_connections on
server_persistent_connections on
max_filedescriptors 65536
`

// startSquid starts squid with ssl-bump in front of the origin. squid
// cannot remap a destination's port, so the load generator CONNECTs to
// the origin's real port, and squid's hosts_file resolves originHost.
func startSquid(ctx context.Context, work, originAddr, originCACert string, pins pinning, env []string, token string) (target, error) {
	bin, err := exec.LookPath("squid")
	if err != nil {
		if _, e2 := os.Stat("/usr/sbin/squid"); e2 == nil {
			bin = "/usr/sbin/squid"
		} else {
			return target{}, errors.New("squid is not installed (Debian package squid-openssl)")
		}
	}
	const certgen = "/usr/lib/squid/security_file_certgen"
	if _, err := os.Stat(certgen); err != nil {
		return target{}, errors.New("squid without ssl-bump: " + certgen + " is missing (install squid-openssl, not squid)")
	}
	dir := filepath.Join(work, report.Squid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return target{}, err
	}
	ca, err := testpki.NewAuthority("credgate-bench squid CA")
	if err != nil {
		return target{}, err
	}
	caCert, caKey, err := ca.WriteFiles(dir, "squid-ca")
	if err != nil {
		return target{}, err
	}
	originCA := filepath.Join(dir, "origin-ca.pem")
	if b, err := os.ReadFile(originCACert); err != nil {
		return target{}, err
	} else if err := os.WriteFile(originCA, b, 0o644); err != nil {
		return target{}, err
	}
	host, portStr, _ := net.SplitHostPort(originAddr)
	port, _ := strconv.Atoi(portStr)
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, []byte(host+" "+originHost+"\n"), 0o644); err != nil {
		return target{}, err
	}
	db := filepath.Join(dir, "ssl_db")
	if out, err := exec.CommandContext(ctx, certgen, "-c", "-s", db, "-M", "16MB").CombinedOutput(); err != nil {
		return target{}, fmt.Errorf("squid: initialise the certificate database: %v: %s", err, strings.TrimSpace(string(out)))
	}
	addr, err := freePort()
	if err != nil {
		return target{}, err
	}
	conf := filepath.Join(dir, "squid.conf")
	cfg := fmt.Sprintf(squidConfig, addr, caCert, caKey, db, originCA, token, hosts, dir)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		return target{}, err
	}
	// Run as root, squid drops to its cache_effective_user (Debian:
	// proxy), which must read the CA and write the logs and the database.
	if u, err := user.Lookup("proxy"); err == nil && os.Geteuid() == 0 {
		// The work directory is private (0700): let the proxy user
		// traverse it to its own directory, nothing more.
		if err := os.Chmod(work, 0o711); err != nil {
			return target{}, fmt.Errorf("squid: let its user reach %s: %w", dir, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		_ = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
			if err == nil {
				_ = os.Chown(p, uid, gid)
			}
			return nil
		})
	}
	p, err := startProc(report.Squid, pins.proxy, dir, filepath.Join(dir, "squid.out"), env, bin, "-N", "-f", conf)
	if err != nil {
		return target{}, err
	}
	if err := p.waitTCP(ctx, addr, 30*time.Second); err != nil {
		p.stop(time.Second)
		return target{}, fmt.Errorf("%w (cache.log: %s)", err, lastLines(filepath.Join(dir, "cache.log"), 5))
	}
	return target{proc: p, lg: &loadgen.Target{Name: report.Squid, Proxy: addr, Host: originHost, Port: port, Path: "/v1/charges", Roots: ca.Pool()}}, nil
}

// mitmAddon sets the header and dials the origin's real address.
const mitmAddon = `# credgate-bench: add the bearer header; dial the origin's real address
# (mitmproxy has no resolve map; the TLS SNI stays the origin's name).
import os

TOKEN = os.environ["CREDGATE_BENCH_TOKEN"]
ORIGIN = (os.environ["CREDGATE_BENCH_ORIGIN_HOST"], int(os.environ["CREDGATE_BENCH_ORIGIN_PORT"]))


class Inject:
    def server_connect(self, data):
        data.server.address = ORIGIN

    def request(self, flow):
        flow.request.headers["Authorization"] = "Bearer " + TOKEN


addons = [Inject()]
`

// startMitmproxy starts mitmdump with the addon in front of the origin.
func startMitmproxy(ctx context.Context, work, originAddr, originCACert string, pins pinning, env []string) (target, error) {
	bin, err := exec.LookPath("mitmdump")
	if err != nil {
		return target{}, errors.New("mitmdump is not installed (Debian package mitmproxy)")
	}
	dir := filepath.Join(work, report.Mitmproxy)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return target{}, err
	}
	// mitmproxy reads its CA from confdir/mitmproxy-ca.pem: key and
	// certificate in one file.
	ca, err := testpki.NewAuthority("credgate-bench mitmproxy CA")
	if err != nil {
		return target{}, err
	}
	caCert, caKey, err := ca.WriteFiles(dir, "ca")
	if err != nil {
		return target{}, err
	}
	kb, err := os.ReadFile(caKey)
	if err != nil {
		return target{}, err
	}
	cb, err := os.ReadFile(caCert)
	if err != nil {
		return target{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, "mitmproxy-ca.pem"), append(kb, cb...), 0o600); err != nil {
		return target{}, err
	}
	addon := filepath.Join(dir, "inject.py")
	if err := os.WriteFile(addon, []byte(mitmAddon), 0o644); err != nil {
		return target{}, err
	}
	addr, err := freePort()
	if err != nil {
		return target{}, err
	}
	host, port, _ := net.SplitHostPort(addr)
	oh, op, _ := net.SplitHostPort(originAddr)
	env = append(env, "CREDGATE_BENCH_ORIGIN_HOST="+oh, "CREDGATE_BENCH_ORIGIN_PORT="+op)
	p, err := startProc(report.Mitmproxy, pins.proxy, dir, filepath.Join(dir, "mitmdump.log"), env, bin,
		"--listen-host", host, "--listen-port", port, "--set", "confdir="+dir,
		"--set", "ssl_verify_upstream_trusted_ca="+originCACert, "-s", addon, "-q", "--set", "flow_detail=0")
	if err != nil {
		return target{}, err
	}
	if err := p.waitTCP(ctx, addr, 60*time.Second); err != nil {
		p.stop(time.Second)
		return target{}, err
	}
	return target{proc: p, lg: &loadgen.Target{Name: report.Mitmproxy, Proxy: addr, Host: originHost, Port: 443, Path: "/v1/charges", Roots: ca.Pool()}}, nil
}

// lastLines returns the last n lines of a file, for an error message.
func lastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// squidVersion is squid's first version line, for the report.
func squidVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "/usr/sbin/squid", "-v").Output()
	if err != nil {
		return "squid"
	}
	return strings.TrimSpace(firstLine(string(out)))
}

// mitmVersion is mitmdump's version line, for the report.
func mitmVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "mitmdump", "--version").Output()
	if err != nil {
		return "mitmproxy"
	}
	return strings.TrimSpace(firstLine(string(out)))
}
