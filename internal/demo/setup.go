package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"text/template"
	"time"

	"github.com/credgate/credgate/gateway/mitm"
)

// Options shape the demo environment.
type Options struct {
	// Listen is the gateway's proxy listener, e.g. "127.0.0.1:3128" or
	// "127.0.0.1:0" for a free port.
	Listen string
	// AdminListen is the admin listener; "127.0.0.1:0" when empty.
	AdminListen string
	// TempDir is where the demo directory is created; os.TempDir() when
	// empty.
	TempDir string
	// Now is the clock used for certificate validity; time.Now when nil.
	Now func() time.Time
}

// Env is a running demo environment: files on disk and the origin.
type Env struct {
	// Dir holds every file the demo wrote; Close removes it.
	Dir string
	// ConfigPath is the gateway config (credgate.yaml).
	ConfigPath string
	// PolicyPath is the policy (policy.yaml).
	PolicyPath string
	// CACert is the interception CA certificate clients must trust.
	CACert string
	// CredentialFile holds the static credential (mode 0600).
	CredentialFile string
	// Origin is the echo origin standing in for the SaaS API.
	Origin *Origin
}

// Setup writes the demo directory and starts the origin. The caller must
// call Close, which also removes the directory.
func Setup(ctx context.Context, opts Options) (env *Env, err error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:3128"
	}
	if opts.AdminListen == "" {
		opts.AdminListen = "127.0.0.1:0"
	}
	dir, err := os.MkdirTemp(opts.TempDir, "credgate-demo-")
	if err != nil {
		return nil, fmt.Errorf("demo: create directory: %w", err)
	}
	env = &Env{
		Dir:            dir,
		ConfigPath:     filepath.Join(dir, "credgate.yaml"),
		PolicyPath:     filepath.Join(dir, "policy.yaml"),
		CredentialFile: filepath.Join(dir, "saas-token"),
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, env.Close(ctx))
			env = nil
		}
	}()

	caCert, _, err := mitm.WriteCA(dir)
	if err != nil {
		return env, fmt.Errorf("demo: interception CA: %w", err)
	}
	env.CACert = caCert

	pki, err := newUpstreamPKI(now())
	if err != nil {
		return env, err
	}
	upstreamCA := filepath.Join(dir, "upstream-ca.pem")
	if err := writeFile(upstreamCA, pki.caPEM, 0o644); err != nil {
		return env, err
	}

	token, err := newToken()
	if err != nil {
		return env, err
	}
	if err := writeFile(env.CredentialFile, []byte(token+"\n"), 0o600); err != nil {
		return env, err
	}

	env.Origin, err = startOrigin("127.0.0.1:0", pki.leaf, token)
	if err != nil {
		return env, err
	}

	data := map[string]string{
		"Listen":         opts.Listen,
		"AdminListen":    opts.AdminListen,
		"CACert":         env.CACert,
		"CAKey":          filepath.Join(dir, "ca-key.pem"),
		"UpstreamCA":     upstreamCA,
		"Host":           Host,
		"Origin":         env.Origin.Addr().String(),
		"CredentialFile": env.CredentialFile,
		"Policy":         env.PolicyPath,
	}
	if err := render(env.PolicyPath, policyTemplate, data); err != nil {
		return env, err
	}
	if err := render(env.ConfigPath, configTemplate, data); err != nil {
		return env, err
	}
	return env, nil
}

// Close stops the origin and removes the demo directory.
func (e *Env) Close(ctx context.Context) error {
	var errs []error
	if e.Origin != nil {
		errs = append(errs, e.Origin.Close(ctx))
	}
	if e.Dir != "" {
		if err := os.RemoveAll(e.Dir); err != nil {
			errs = append(errs, fmt.Errorf("demo: remove %s: %w", e.Dir, err))
		}
	}
	return errors.Join(errs...)
}

// newToken returns a random 32-character credential starting "demo".
func newToken() (string, error) {
	b := make([]byte, 14)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("demo: credential: %w", err)
	}
	return "demo" + hex.EncodeToString(b), nil
}

func render(path, tmpl string, data map[string]string) error {
	t, err := template.New(filepath.Base(path)).Funcs(template.FuncMap{"q": strconv.Quote}).Parse(tmpl)
	if err != nil {
		return fmt.Errorf("demo: template %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("demo: write %s: %w", path, err)
	}
	if err := t.Execute(f, data); err != nil {
		f.Close()
		return fmt.Errorf("demo: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("demo: write %s: %w", path, err)
	}
	return nil
}

const configTemplate = `# credgate demo gateway config (generated; removed when the demo exits)
listen: {{q .Listen}}
admin_listen: {{q .AdminListen}}
policy: {{q .Policy}}
ca:
  cert: {{q .CACert}}
  key: {{q .CAKey}}
upstream:
  # the demo origin's own CA, standing in for the public roots a real SaaS uses
  ca_bundle: {{q .UpstreamCA}}
resolve:
  # api.saas.test is not in DNS; pin it to the local echo origin
  {{q (printf "%s:443" .Host)}}: {{q .Origin}}
log:
  level: warn
shutdown_timeout: 5s
`

const policyTemplate = `# credgate demo policy (generated; removed when the demo exits)
workloads:
  local:
    cidrs: [127.0.0.0/8, "::1/128"]
destinations:
  saas:
    hosts: [{{.Host}}]
    ports: [443]
    allow_private: true   # the demo origin runs on 127.0.0.1
credentials:
  saas-token:
    provider: static
    file: {{q .CredentialFile}}
rules:
  - name: saas-bearer
    from: local
    to: saas
    methods: [GET, POST]
    paths: ["/v1/*"]
    inject:
      credential: saas-token
      as: bearer
default: deny
`
