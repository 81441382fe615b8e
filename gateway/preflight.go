package gateway

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/audit"
	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/identity/runtoken"
	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/internal/otlp"
	"github.com/credgate/credgate/internal/writable"
	"github.com/credgate/credgate/killswitch"
)

// keyError is an error of a loader that New and CheckFiles share, with
// the config key (dotted, below the section the caller names; an index
// for a list item) that holds the bad file or variable, so that CheckFiles
// can give its position.
type keyError struct {
	key string
	err error
}

func (e *keyError) Error() string { return e.err.Error() }
func (e *keyError) Unwrap() error { return e.err }

// pairKey tells which file of a certificate and key pair an error of
// tls.X509KeyPair or mitm.ParseCA is about: "key" or "cert".
func pairKey(err error) string {
	m := err.Error()
	if strings.Contains(m, "key input") || strings.Contains(m, "private key") || strings.Contains(m, "CA key") {
		return "key"
	}
	return "cert"
}

// parseCA is the interception CA from the contents of ca.cert and ca.key;
// New applies it to every version of the files, CheckFiles to the files as
// they are.
// newIssuer is the leaf issuer of the interception CA ca under c.
func newIssuer(c CAConfig, ca *mitm.CA) *mitm.Issuer {
	return mitm.NewIssuer(ca, mitm.IssuerOptions{LeafTTL: c.LeafTTL.D(), CacheSize: c.LeafCacheSize})
}

// Issuer reads the interception CA of c and returns its leaf issuer, as
// the gateway builds it at start: credgate explain asks it whether the
// CA may sign for a host (its name constraints). Nothing is written.
func (c *Config) Issuer() (*mitm.Issuer, error) {
	certPEM, err := cfgfile.Read(c.CA.Cert)
	if err != nil {
		return nil, fmt.Errorf("ca.cert: %w", err)
	}
	keyPEM, err := cfgfile.Read(c.CA.Key)
	if err != nil {
		return nil, fmt.Errorf("ca.key: %w", err)
	}
	ca, err := parseCA(c.CA, certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return newIssuer(c.CA, ca), nil
}

func parseCA(c CAConfig, certPEM, keyPEM []byte) (*mitm.CA, error) {
	ca, err := mitm.ParseCA(certPEM, keyPEM, c.Cert, c.Key)
	if err != nil {
		return nil, &keyError{key: pairKey(err), err: fmt.Errorf("ca.cert/ca.key: %w (a CA certificate and its own key, PEM: credgate ca init --out DIR writes a pair)", err)}
	}
	return ca, nil
}

// checkpointKey reads audit.checkpoint.key_file.
func checkpointKey(path string) (audit.Signer, error) {
	s, err := audit.LoadKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit.checkpoint.key_file: %w", err)
	}
	return s, nil
}

// fingerprintKey reads audit.fingerprint_key_file.
func fingerprintKey(path string) ([]byte, error) {
	k, err := readKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit.fingerprint_key_file: %w", err)
	}
	return k, nil
}

// checkAuditOutput says why the audit file at path could not be opened
// for appending (and rotated, when rotates), without creating it: its
// directory must exist, the file, when it exists, must be a writable
// regular file, and the directory must be writable when the file is to be
// created or rotated. newAuditor runs it before opening the file.
func checkAuditOutput(path string, rotates bool) error {
	dir := filepath.Dir(path)
	dirErr := writable.Dir(dir)
	switch {
	case errors.Is(dirErr, fs.ErrNotExist):
		return fmt.Errorf("audit.output: directory %s does not exist; create it (the gateway creates the file, not its directory) or write the audit log to stdout", dir)
	case errors.Is(dirErr, writable.ErrNotDir):
		return fmt.Errorf("audit.output: %s is not a directory; name a file in a directory", dir)
	case dirErr != nil && !errors.Is(dirErr, writable.ErrDenied):
		return fmt.Errorf("audit.output: %w", dirErr)
	}
	// The file, when it exists, is checked before the directory, which
	// needs to be writable only to create or rotate the file.
	fileErr := writable.File(path)
	switch {
	case errors.Is(fileErr, writable.ErrIsDir):
		return fmt.Errorf("audit.output: %s is a directory; name a file in it", path)
	case errors.Is(fileErr, writable.ErrDenied):
		return fmt.Errorf("audit.output: %s is not writable by the gateway's user (uid %d); change its owner or mode", path, os.Getuid())
	case fileErr != nil && !errors.Is(fileErr, fs.ErrNotExist):
		return fmt.Errorf("audit.output: %w", fileErr)
	}
	if (fileErr != nil || rotates) && dirErr != nil {
		return fmt.Errorf("audit.output: directory %s is not writable by the gateway's user (uid %d), which creates and rotates %s in it; change its owner or mode", dir, os.Getuid(), filepath.Base(path))
	}
	return nil
}

// namedFile is one file the config names, with the key that names it and
// what it holds.
type namedFile struct {
	keys []string
	path string
	hint string
}

// namedFiles lists every file the config names that must exist.
// admin.state_file is not one (a missing one holds no switches), nor
// audit.output (the gateway creates it).
func (c *Config) namedFiles() []namedFile {
	const keyHint = "32 random bytes, base64: head -c32 /dev/urandom | base64 > FILE"
	files := []namedFile{
		{[]string{"policy"}, c.Policy, "the policy file (workloads, destinations, credentials, rules)"},
		{[]string{"ca", "cert"}, c.CA.Cert, "write it with: credgate ca init --out DIR"},
		{[]string{"ca", "key"}, c.CA.Key, "write it with: credgate ca init --out DIR"},
		{[]string{"tls", "cert"}, c.TLS.Cert, "the TLS listener's certificate"},
		{[]string{"tls", "key"}, c.TLS.Key, "the TLS listener's private key"},
		{[]string{"tls", "client_ca"}, c.TLS.ClientCA, "the CA bundle client certificates are verified against"},
		{[]string{"upstream", "ca_bundle"}, c.Upstream.CABundle, "PEM certificates of the CAs upstream servers are verified against"},
		{[]string{"cache", "redis", "password_file"}, c.Cache.Redis.PasswordFile, "the Redis password"},
		{[]string{"cache", "redis", "tls", "ca"}, c.Cache.Redis.TLS.CA, "the CA of the Redis server's certificate"},
		{[]string{"cache", "redis", "tls", "cert"}, c.Cache.Redis.TLS.Cert, "the gateway's Redis client certificate"},
		{[]string{"cache", "redis", "tls", "key"}, c.Cache.Redis.TLS.Key, "the gateway's Redis client key"},
		{[]string{"admin", "token_file"}, c.Admin.TokenFile, "the admin API's bearer token, at least 16 characters: head -c32 /dev/urandom | base64 > FILE"},
		{[]string{"admin", "tls", "cert"}, c.Admin.TLS.Cert, "the admin listener's certificate"},
		{[]string{"admin", "tls", "key"}, c.Admin.TLS.Key, "the admin listener's private key"},
		{[]string{"admin", "tls", "client_ca"}, c.Admin.TLS.ClientCA, "the CA bundle admin client certificates are verified against"},
		{[]string{"audit", "checkpoint", "key_file"}, c.Audit.Checkpoint.KeyFile, "an Ed25519 private key: openssl genpkey -algorithm ed25519 -out FILE"},
		{[]string{"audit", "fingerprint_key_file"}, c.Audit.FingerprintKeyFile, "at least 16 random bytes, base64: head -c32 /dev/urandom | base64 > FILE"},
	}
	for i, k := range c.Cache.Redis.EncryptionKeys {
		if k.File != "" {
			files = append(files, namedFile{[]string{"cache", "redis", "encryption_keys", strconv.Itoa(i), "file"}, k.File, keyHint})
		}
	}
	for i, b := range c.Identity.MTLS.Bundles {
		files = append(files, namedFile{[]string{"identity", "mtls", "bundles", strconv.Itoa(i), "file"}, b.File, "PEM certificates of the trust domain's CA, such as a SPIRE trust bundle"})
	}
	for i, is := range c.Identity.JWT.Issuers {
		files = append(files, namedFile{[]string{"identity", "jwt", "issuers", strconv.Itoa(i), "jwks_file"}, is.JWKSFile, "the issuer's JSON Web Key Set"})
	}
	if p := c.Identity.Posture; p != nil {
		files = append(files, namedFile{[]string{"identity", "posture", "file"}, p.File, "a JSON object keyed by workload name"})
	}
	if c.RunTokens != nil {
		files = append(files, namedFile{[]string{"run_tokens", "key_file"}, c.RunTokens.KeyFile, "a private key: openssl genpkey -algorithm ed25519 -out FILE"})
	}
	otlpFiles := func(on bool, section []string, ca string, headers map[string]string) {
		if !on {
			return
		}
		files = append(files, namedFile{append(section, "ca"), ca, "PEM certificates of the CA that signed the Collector's certificate"})
		for name, f := range headers {
			files = append(files, namedFile{append(section, "headers", name, "file"), f, "the header's value"})
		}
	}
	headerFiles := func(h map[string]otlp.HeaderValue) map[string]string {
		m := map[string]string{}
		for name, v := range h {
			if v.File != "" {
				m[name] = v.File
			}
		}
		return m
	}
	otlpFiles(c.Audit.OTLP.Enabled(), []string{"audit", "otlp"}, c.Audit.OTLP.OTLP.CA, headerFiles(c.Audit.OTLP.OTLP.Headers))
	otlpFiles(c.Tracing.Enabled, []string{"tracing"}, c.Tracing.OTLP.CA, headerFiles(c.Tracing.OTLP.Headers))
	return files
}

// keyPath writes a config key as messages name it: the keys joined with
// dots, a list index in brackets ("cache.redis.encryption_keys[0].file").
func keyPath(keys ...string) string {
	var b strings.Builder
	for i, k := range keys {
		if _, err := strconv.Atoi(k); err == nil {
			b.WriteString("[" + k + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(k)
	}
	return b.String()
}

// namesKey reports whether msg starts by naming the key at path (alone or
// in a pair such as "ca.cert/ca.key: ...").
func namesKey(msg, path string) bool {
	head, _, _ := strings.Cut(msg, ": ")
	return path != "" && strings.Contains(head, path)
}

// fileProblem says why f cannot be read, "" when it can.
func fileProblem(f namedFile) string {
	key := keyPath(f.keys...)
	st, err := os.Stat(f.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("%s: %s does not exist (%s; a relative path is relative to the config file's directory); correct the path or put the file there", key, f.path, f.hint)
	case err != nil:
		return fmt.Sprintf("%s: %s cannot be read: %v; make it readable by the gateway's user", key, f.path, errors.Unwrap(err))
	case st.IsDir():
		return fmt.Sprintf("%s: %s is a directory; name the file in it (%s)", key, f.path, f.hint)
	case !st.Mode().IsRegular():
		// A named pipe's read waits for a writer, a device's (a link to
		// /dev/zero) may never end: every loader reads through cfgfile,
		// which refuses them too; said here once, with the key.
		return fmt.Sprintf("%s: %s is %s, not a regular file; name a regular file (a symbolic link to one is fine): %s", key, f.path, cfgfile.Kind(st.Mode()), f.hint)
	}
	// O_NONBLOCK: opening a named pipe must not wait for a writer (the
	// file's own loader then says what it is); it changes nothing for a
	// regular file.
	fh, err := os.OpenFile(f.path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Sprintf("%s: %s cannot be read: %v (the gateway's user must be able to read it)", key, f.path, errors.Unwrap(err))
	}
	fh.Close()
	return ""
}

// CheckFiles reads every file and environment variable the config names
// and parses each with the code New uses for it at start: the
// interception CA pair, the TLS listener's and the admin listener's
// certificates and client CAs, upstream.ca_bundle, the admin token, the
// kill switch's state file (when present), the audit output's directory,
// the audit checkpoint and fingerprint keys, the run-token signing key,
// Redis's encryption keys, password and TLS files, and the OTLP
// exporters' CA and header values, and identity's trust bundles, key set
// files and posture file (identity.Config.CheckFiles). It binds no port,
// connects nowhere (Redis, OTLP receivers, Vault and the SPIFFE Workload
// API are not contacted) and creates no file. Each problem is a
// *ConfigError at the key that names the file or variable.
//
// Not checked here: the policy's content (policy.LoadFile), the files
// identity reads only to fetch remote sources (ca_file,
// bearer_token_file, the kubernetes factor's) and the audit checkpoint
// signer (audit.LoadSigner, which contacts Vault).
func (c *Config) CheckFiles() error {
	var errs []error
	// Every message names the key it is about (a reader of the log line
	// has no file open at its position): loaders that word it otherwise
	// ("admin token: ...") get the key path in front.
	at := func(err error, keys ...string) {
		var ke *keyError
		if errors.As(err, &ke) {
			keys = append(keys, strings.Split(ke.key, ".")...)
		}
		l, col := valuePosition(c.root, keys...)
		msg := err.Error()
		if p := keyPath(keys...); !namesKey(msg, p) {
			msg = p + ": " + msg
		}
		errs = append(errs, &ConfigError{File: c.file, Line: l, Col: col, Msg: msg})
	}
	missing := map[string]bool{}
	missingKey := map[string]bool{}
	for _, f := range c.namedFiles() {
		if f.path == "" {
			continue
		}
		if msg := fileProblem(f); msg != "" {
			missing[f.path] = true
			missingKey[keyPath(f.keys...)] = true
			l, col := valuePosition(c.root, f.keys...)
			errs = append(errs, &ConfigError{File: c.file, Line: l, Col: col, Msg: msg})
		}
	}
	// read returns the files' contents, or false when one is missing
	// (reported above) or cannot be read.
	read := func(keys []string, paths ...string) ([][]byte, bool) {
		out := make([][]byte, 0, len(paths))
		for _, p := range paths {
			if missing[p] {
				return nil, false
			}
			b, err := cfgfile.Read(p)
			if err != nil {
				at(fmt.Errorf("%s: %w", strings.Join(keys, "."), err), keys...)
				return nil, false
			}
			out = append(out, b)
		}
		return out, true
	}

	if files, ok := read([]string{"ca"}, c.CA.Cert, c.CA.Key); ok {
		if _, err := parseCA(c.CA, files[0], files[1]); err != nil {
			at(err, "ca")
		}
	}
	serverFiles := func(section []string, prefix string, t ListenerTLS, requestOnly bool) {
		paths := []string{t.Cert, t.Key}
		if t.ClientCA != "" {
			paths = append(paths, t.ClientCA)
		}
		if files, ok := read(section, paths...); ok {
			if _, err := serverTLS(prefix, t.ClientCA, files, requestOnly); err != nil {
				at(err, section...)
			}
		}
	}
	if c.TLSListen != "" && !c.TLS.SVID && c.TLS.Cert != "" && c.TLS.Key != "" {
		identityVerifies := len(c.Identity.MTLS.Bundles) > 0 || c.Identity.MTLS.WorkloadAPI != nil
		serverFiles([]string{"tls"}, "tls", c.TLS, identityVerifies)
	}
	if a := c.Admin.TLS; a.Enabled() {
		serverFiles([]string{"admin", "tls"}, "admin.tls", ListenerTLS{Cert: a.Cert, Key: a.Key, ClientCA: a.ClientCA}, false)
	}
	if b := c.Upstream.CABundle; b != "" && !missing[b] {
		if _, err := loadUpstreamTrust(b); err != nil {
			at(err, "upstream", "ca_bundle")
		}
	}
	if r := c.Cache.Redis; r.Enabled() {
		if !anyMissing(missing, keyFiles(r)...) {
			if _, err := redisKeys(r); err != nil {
				at(err, "cache", "redis", "encryption_keys")
			}
		}
		if !anyMissing(missing, r.PasswordFile, r.TLS.CA, r.TLS.Cert, r.TLS.Key) {
			if _, err := redisOptions(r); err != nil {
				at(err, "cache", "redis")
			}
		}
	}
	if !missing[c.Admin.TokenFile] {
		if _, err := newAdminToken(c.Admin); err != nil {
			at(err, "admin")
		}
	}
	if p := c.Admin.StateFile; p != "" {
		if err := killswitch.CheckStateFile(p); err != nil {
			at(fmt.Errorf("admin.state_file: %w", err), "admin", "state_file")
		}
	}
	if o := c.Audit.Output; o != "" && o != "stdout" && o != "stderr" {
		if err := checkAuditOutput(o, c.Audit.Rotate.MaxBytes != 0 || c.Audit.Rotate.Every != 0); err != nil {
			at(err, "audit", "output")
		}
	}
	if p := c.Audit.Checkpoint.KeyFile; p != "" && !missing[p] {
		if _, err := checkpointKey(p); err != nil {
			at(err, "audit", "checkpoint", "key_file")
		}
	}
	if p := c.Audit.FingerprintKeyFile; p != "" && !missing[p] {
		if _, err := fingerprintKey(p); err != nil {
			at(err, "audit", "fingerprint_key_file")
		}
	}
	if rt := c.RunTokens; rt != nil && rt.KeyFile != "" && !missing[rt.KeyFile] {
		if err := runtoken.CheckKeyFile(rt.KeyFile); err != nil {
			at(err, "run_tokens", "key_file")
		}
	}
	exporter := func(section []string, name string, e *otlp.Endpoint) {
		if _, err := e.HeaderValues(name); err != nil {
			at(err, append(section, "headers")...)
		}
		if e.CA != "" && !missing[e.CA] {
			if _, err := e.TLSConfig(name); err != nil {
				at(err, append(section, "ca")...)
			}
		}
	}
	for _, p := range c.Identity.CheckFiles() {
		keys := append([]string{"identity"}, p.Key...)
		if !missingKey[keyPath(keys...)] {
			at(p.Err, keys...)
		}
	}
	if c.Audit.OTLP.Enabled() {
		exporter([]string{"audit", "otlp"}, "audit.otlp", &c.Audit.OTLP.OTLP)
	}
	if c.Tracing.Enabled {
		exporter([]string{"tracing"}, "tracing", &c.Tracing.OTLP)
	}
	return errors.Join(errs...)
}

// keyFiles are the files of cache.redis.encryption_keys.
func keyFiles(r Redis) []string {
	var fs []string
	for _, k := range r.EncryptionKeys {
		fs = append(fs, k.File)
	}
	return fs
}

func anyMissing(missing map[string]bool, paths ...string) bool {
	for _, p := range paths {
		if p != "" && missing[p] {
			return true
		}
	}
	return false
}

// valuePosition is the line and column of the value at keys under the
// mapping n (as deep as the keys are found; a number steps into a
// sequence); 0, 0 without a document.
func valuePosition(n *yaml.Node, keys ...string) (int, int) {
	if n == nil {
		return 0, 0
	}
	line, col := n.Line, n.Column
	for _, k := range keys {
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					next = n.Content[i+1]
					break
				}
			}
		case yaml.SequenceNode:
			if i, err := strconv.Atoi(k); err == nil && i >= 0 && i < len(n.Content) {
				next = n.Content[i]
			}
		}
		if next == nil {
			break
		}
		n = next
		line, col = n.Line, n.Column
	}
	return line, col
}
