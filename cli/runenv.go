package cli

import (
	"bytes"
	_ "embed"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"crypto/x509"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/credgate/credgate/internal/cfgfile"
)

// nodePreload is the NODE_OPTIONS=--require script that makes Node
// versions without NODE_USE_ENV_PROXY (Node 20) follow HTTPS_PROXY.
//
//go:embed runfiles/node-proxy.cjs
var nodePreload []byte

// trustStorePassword protects the Java trust store. A trust store holds
// only public certificates; Java's PKCS#12 loader wants a password all
// the same, and "changeit" is the one every Java tool assumes.
const trustStorePassword = "changeit"

// systemRootFiles are where Linux distributions and macOS keep their PEM
// root bundles (the list crypto/x509 reads), first found wins.
var systemRootFiles = []string{
	"/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu, Gentoo, Arch
	"/etc/pki/tls/certs/ca-bundle.crt",                  // Fedora, RHEL 6
	"/etc/ssl/ca-bundle.pem",                            // openSUSE
	"/etc/pki/tls/cacert.pem",                           // OpenELEC
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7
	"/etc/ssl/cert.pem",                                 // Alpine, macOS
}

// envVar is one variable credgate run sets.
type envVar struct{ Key, Value string }

// runFiles are the files credgate run writes into its private directory.
type runFiles struct {
	// Bundle is the PEM bundle: the system roots and the gateway CA.
	Bundle string
	// TrustStore is the same as a PKCS#12 trust store, for Java.
	TrustStore string
	// NodePreload is the Node preload script.
	NodePreload string
}

// writeRunFiles writes the bundle, the Java trust store and the Node
// preload into dir (which the caller made 0700). systemPEM are the system
// roots ("" when none were found), caPEM the gateway's CA.
func writeRunFiles(dir string, systemPEM, caPEM []byte) (runFiles, error) {
	f := runFiles{
		Bundle:      filepath.Join(dir, "ca-bundle.pem"),
		TrustStore:  filepath.Join(dir, "truststore.p12"),
		NodePreload: filepath.Join(dir, "node-proxy.cjs"),
	}
	var bundle bytes.Buffer
	bundle.Write(systemPEM)
	if len(systemPEM) > 0 && systemPEM[len(systemPEM)-1] != '\n' {
		bundle.WriteByte('\n')
	}
	bundle.Write(caPEM)
	certs := parseCerts(bundle.Bytes())
	if len(parseCerts(caPEM)) == 0 {
		return f, errors.New("run: the gateway CA holds no PEM certificate (check --ca, the config's ca.cert, or the admin listener's /admin/v1/ca.pem)")
	}
	p12, err := pkcs12.Modern.EncodeTrustStore(certs, trustStorePassword)
	if err != nil {
		return f, fmt.Errorf("run: Java trust store: %w", err)
	}
	for _, w := range []struct {
		path string
		data []byte
	}{{f.Bundle, bundle.Bytes()}, {f.TrustStore, p12}, {f.NodePreload, nodePreload}} {
		if err := os.WriteFile(w.path, w.data, 0o600); err != nil {
			return f, fmt.Errorf("run: write %s: %w", w.path, err)
		}
	}
	return f, nil
}

// parseCerts returns the certificates of a PEM bundle, skipping blocks
// that do not parse (a distribution bundle may hold one Go refuses).
func parseCerts(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

// systemRoots reads the system's PEM root bundle: SSL_CERT_FILE of the
// caller's environment (what it trusts today) if set, else the first of
// systemRootFiles. It returns nil, "" when there is none.
func systemRoots(getenv func(string) string) ([]byte, string) {
	files := systemRootFiles
	if f := getenv("SSL_CERT_FILE"); f != "" {
		files = append([]string{f}, files...)
	}
	for _, f := range files {
		if b, err := cfgfile.Read(f); err == nil && len(parseCerts(b)) > 0 {
			return b, f
		}
	}
	return nil, ""
}

// runEnv is what the variables are made of.
type runEnv struct {
	// Proxy is the gateway's proxy listener, with the run token as the
	// password when there is one.
	Proxy *url.URL
	// NoProxy is the NO_PROXY list.
	NoProxy string
	// Files are the bundle, trust store and Node preload.
	Files runFiles
	// Workload is the workload the token names, "" without a token.
	Workload string
	// JavaProxy is Java's proxy, nil for Proxy: Java sends no proxy
	// credentials, so where the relay cannot admit it as one of the
	// command's processes (not Linux) it gets the gateway itself.
	JavaProxy *url.URL
}

// vars returns the variables to set, in a fixed order. base is the
// environment they are added to (os.Environ()): variables that list
// things (NODE_OPTIONS, JAVA_TOOL_OPTIONS, GIT_CONFIG_COUNT) extend what
// base holds instead of replacing it.
func (r runEnv) vars(base []string) []envVar {
	inherited := make(map[string]string, len(base))
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		inherited[k] = v // the last one wins, as in mergeEnv
	}
	get := func(k string) string { return inherited[k] }
	proxy := r.Proxy.String()
	var out []envVar
	add := func(k, v string) { out = append(out, envVar{k, v}) }
	// ALL_PROXY: curl's proxy for every scheme without a variable of its
	// own (ftp, ws, wss...), which would otherwise go direct or through a
	// proxy the caller had set.
	for _, k := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"} {
		add(k, proxy)
	}
	add("NO_PROXY", r.NoProxy)
	add("no_proxy", r.NoProxy)
	// Every other proxy variable the caller's environment holds is
	// overridden too (proxyVarValue): a client that reads it would
	// otherwise leave the gateway.
	set := map[string]bool{}
	for _, v := range out {
		set[v.Key] = true
	}
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if v, ok := proxyVarValue(k, proxy, r.NoProxy); ok && !set[k] {
			set[k] = true
			add(k, v)
		}
	}
	// The CA bundle: curl, Python (ssl, requests), Go (SSL_CERT_FILE),
	// Node (added to its roots), the AWS SDKs, git, pip and npm.
	for _, k := range []string{"CURL_CA_BUNDLE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "AWS_CA_BUNDLE", "GIT_SSL_CAINFO", "PIP_CERT", "npm_config_cafile"} {
		add(k, r.Files.Bundle)
	}
	// Node: its own proxy support where it has it, the preload elsewhere.
	add("NODE_USE_ENV_PROXY", "1")
	add("NODE_OPTIONS", joinOpts(get("NODE_OPTIONS"), "--require="+r.Files.NodePreload))
	// git: the proxy (credentials sent at once: Basic, not after a 407
	// the gateway does not send) through GIT_CONFIG_*, after any the
	// caller set.
	n, _ := strconv.Atoi(get("GIT_CONFIG_COUNT"))
	if n < 0 {
		n = 0
	}
	// A proxy the caller's entries set (http.<url>.proxy and
	// remote.<name>.proxy win over http.proxy) is the gateway too.
	for i := range min(n, maxGitConfigCount) {
		if strings.HasSuffix(strings.ToLower(get("GIT_CONFIG_KEY_"+strconv.Itoa(i))), ".proxy") {
			add("GIT_CONFIG_VALUE_"+strconv.Itoa(i), proxy)
		}
	}
	git := []envVar{{"http.proxy", proxy}, {"http.proxyAuthMethod", "basic"}}
	add("GIT_CONFIG_COUNT", strconv.Itoa(n+len(git)))
	for i, kv := range git {
		add("GIT_CONFIG_KEY_"+strconv.Itoa(n+i), kv.Key)
		add("GIT_CONFIG_VALUE_"+strconv.Itoa(n+i), kv.Value)
	}
	// GIT_CONFIG_PARAMETERS (what a parent git's -c passes on) is read
	// after GIT_CONFIG_COUNT: where the caller has it, the same entries,
	// and the gateway for each of its keys ending in .proxy, end it.
	if params := get("GIT_CONFIG_PARAMETERS"); strings.TrimSpace(params) != "" {
		var extra []string
		for _, m := range gitParamProxyKey.FindAllStringSubmatch(params, -1) {
			extra = append(extra, gitParam(m[1], proxy))
		}
		for _, kv := range git {
			extra = append(extra, gitParam(kv.Key, kv.Value))
		}
		add("GIT_CONFIG_PARAMETERS", strings.TrimSpace(params)+" "+strings.Join(extra, " "))
	}
	// Java: the trust store and the proxy (Java takes no credentials
	// from these properties; the relay admits it on Linux as one of the
	// command's processes, and adds the token; docs/agents.md).
	jp := r.Proxy
	if r.JavaProxy != nil {
		jp = r.JavaProxy
	}
	host, port := jp.Hostname(), jp.Port()
	if port == "" {
		port = "80"
	}
	javaProxy := []string{
		"-Dhttps.proxyHost=" + host, "-Dhttps.proxyPort=" + port,
		"-Dhttp.proxyHost=" + host, "-Dhttp.proxyPort=" + port,
	}
	if np := javaNonProxyHosts(r.NoProxy); np != "" {
		javaProxy = append(javaProxy, "-Dhttp.nonProxyHosts="+np)
	}
	java := append([]string{
		"-Djavax.net.ssl.trustStore=" + r.Files.TrustStore,
		"-Djavax.net.ssl.trustStoreType=PKCS12",
		"-Djavax.net.ssl.trustStorePassword=" + trustStorePassword,
	}, javaProxy...)
	add("JAVA_TOOL_OPTIONS", joinOpts(get("JAVA_TOOL_OPTIONS"), java...))
	// The java launcher reads JDK_JAVA_OPTIONS, and the JVM _JAVA_OPTIONS,
	// after JAVA_TOOL_OPTIONS: a proxy the caller set there would win.
	// Where the caller set either, the proxy options end it too.
	for _, k := range []string{"JDK_JAVA_OPTIONS", "_JAVA_OPTIONS"} {
		if v := get(k); strings.TrimSpace(v) != "" {
			add(k, joinOpts(v, javaProxy...))
		}
	}
	if r.Workload != "" {
		add("CREDGATE_RUN_WORKLOAD", r.Workload)
	}
	return out
}

// gitParamProxyKey finds the keys ending in .proxy (any case) of a
// GIT_CONFIG_PARAMETERS value: 'key'='value' entries, or 'key=value' in
// the older form.
var gitParamProxyKey = regexp.MustCompile(`'([^'=]*\.(?i:proxy))'?=`)

// gitParam is one GIT_CONFIG_PARAMETERS entry, 'key'='value', each
// part single-quoted as git quotes it (singleQuote).
func gitParam(k, v string) string {
	return singleQuote(k) + "=" + singleQuote(v)
}

// maxGitConfigCount bounds the caller's GIT_CONFIG_COUNT entries
// credgate run reads (git itself refuses a count it cannot hold).
const maxGitConfigCount = 1 << 16

// proxyVarValue reports whether a variable named k, inherited from the
// caller, is one that clients read as a proxy or a list of hosts that
// bypass it, and returns what credgate run sets it to instead: the
// gateway (proxy) for a proxy, the NO_PROXY list (noProxy) for a list.
// The class is every name that ends in _proxy in any case — Python's
// urllib reads each such name, lower-cased, as <scheme>_proxy (NO_proxy
// is its no_proxy, Https_proxy its https_proxy), curl reads
// <scheme>_proxy, pip PIP_PROXY, npm npm_config_https_proxy, Yarn
// YARN_HTTPS_PROXY — and npm's npm_config_noproxy.
//
// Only names a shell can hold (envName) are in the class: --print-env
// writes each override as shell or $GITHUB_ENV text, where any other name
// would be code or further variables, and the names that direct a client
// (a URL scheme or "no" before _proxy) are all of that form.
func proxyVarValue(k, proxy, noProxy string) (string, bool) {
	if !envName(k) {
		return "", false
	}
	l := strings.ToLower(k)
	switch {
	case l == "npm_config_noproxy", strings.HasSuffix(l, "no_proxy"):
		return noProxy, true
	case strings.HasSuffix(l, "_proxy"):
		return proxy, true
	}
	return "", false
}

// joinOpts appends options to a space-separated option list. Options
// holding a space are double-quoted (NODE_OPTIONS and JAVA_TOOL_OPTIONS
// both read quotes).
func joinOpts(existing string, opts ...string) string {
	parts := []string{}
	if s := strings.TrimSpace(existing); s != "" {
		parts = append(parts, s)
	}
	for _, o := range opts {
		if strings.ContainsAny(o, " \t\"") {
			o = `"` + strings.ReplaceAll(o, `"`, `\"`) + `"`
		}
		parts = append(parts, o)
	}
	return strings.Join(parts, " ")
}

// javaNonProxyHosts turns a NO_PROXY list into http.nonProxyHosts
// ("localhost|127.0.0.1|*.internal").
func javaNonProxyHosts(noProxy string) string {
	var out []string
	for _, h := range strings.Split(noProxy, ",") {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
		case strings.HasPrefix(h, "."):
			out = append(out, "*"+h)
		case strings.Contains(h, ":") && net.ParseIP(h) != nil:
			out = append(out, "["+h+"]")
		default:
			out = append(out, h)
		}
	}
	return strings.Join(out, "|")
}

// adminCredentialVars are the variables that give credgate run (and
// credgate admin) the admin API: the token itself, or the files of the
// token and of the admin client certificate. Whoever holds them may issue
// run tokens for any workload run_tokens lists and use the whole admin
// API, so the command does not get them. Nor does it get the files of
// the client certificate the relay presents for it (the mtls factor):
// like the run token, the relay holds that identity, not the command.
var adminCredentialVars = []string{"CREDGATE_ADMIN_TOKEN", "CREDGATE_ADMIN_TOKEN_FILE", "CREDGATE_ADMIN_CERT", "CREDGATE_ADMIN_KEY", "CREDGATE_GATEWAY_CERT", "CREDGATE_GATEWAY_KEY"}

// withoutAdminCredentials returns env without adminCredentialVars, and
// the names it removed, in adminCredentialVars' order.
func withoutAdminCredentials(env []string) (kept, removed []string) {
	seen := map[string]bool{}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(adminCredentialVars, k) {
			seen[k] = true
			continue
		}
		kept = append(kept, kv)
	}
	for _, k := range adminCredentialVars {
		if seen[k] {
			removed = append(removed, k)
		}
	}
	return kept, removed
}

// printUnset writes, for a shell, an unset line for each name (the
// admin credentials --print-env's caller holds); $GITHUB_ENV cannot
// unset a variable, so the github format writes nothing.
func printUnset(w io.Writer, format string, names []string) error {
	if format != "shell" || len(names) == 0 {
		return nil
	}
	if _, err := fmt.Fprintf(w, "unset %s\n", strings.Join(names, " ")); err != nil {
		return fmt.Errorf("run --print-env: %w", err)
	}
	return nil
}

// mergeEnv returns base with vars set (replacing earlier values).
func mergeEnv(base []string, vars []envVar) []string {
	set := map[string]bool{}
	for _, v := range vars {
		set[v.Key] = true
	}
	out := make([]string, 0, len(base)+len(vars))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if !set[k] {
			out = append(out, kv)
		}
	}
	for _, v := range vars {
		out = append(out, v.Key+"="+v.Value)
	}
	return out
}

// envName reports whether k is a portable variable name (POSIX:
// letters, digits and underscores, not starting with a digit).
func envName(k string) bool {
	if k == "" || (k[0] >= '0' && k[0] <= '9') {
		return false
	}
	for _, c := range []byte(k) {
		if !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// printEnv writes vars for a shell (export K='V') or for GitHub Actions'
// $GITHUB_ENV file (K=V, or a heredoc for a value with a newline).
func printEnv(w io.Writer, format string, vars []envVar) error {
	for _, v := range vars {
		if !envName(v.Key) {
			// Never printed: in either format the name is not quoted.
			return fmt.Errorf("run --print-env: %q is not a variable name a shell can hold", v.Key)
		}
		var err error
		switch format {
		case "github":
			if strings.ContainsAny(v.Value, "\r\n") {
				delim := "CREDGATE_EOF"
				for strings.Contains(v.Value, delim) {
					delim += "_"
				}
				_, err = fmt.Fprintf(w, "%s<<%s\n%s\n%s\n", v.Key, delim, v.Value, delim)
			} else {
				_, err = fmt.Fprintf(w, "%s=%s\n", v.Key, v.Value)
			}
		default:
			_, err = fmt.Fprintf(w, "export %s=%s\n", v.Key, shellQuote(v.Value))
		}
		if err != nil {
			return fmt.Errorf("run --print-env: %w", err)
		}
	}
	return nil
}

// shellQuote quotes s for a POSIX shell: as is when it holds only
// characters no shell treats specially, else in single quotes
// (singleQuote).
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:,=@%+") == "" {
		return s
	}
	return singleQuote(s)
}

// singleQuote quotes s in single quotes, each single quote in it closed,
// escaped with a backslash and reopened: the POSIX shell's form, which
// git's GIT_CONFIG_PARAMETERS uses too.
func singleQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
