//go:build !windows

package all

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/providers"
)

// fileKind is how a credential file's mode is judged.
type fileKind int

const (
	// public: not a secret (a CA bundle, a certificate alone); not judged.
	public fileKind = iota
	// secret: cfgfile.CheckSecretMode through providers.CheckSecretFile:
	// readable by others, writable by group or others, a foreign owner.
	secret
	// token: a service-account token, cfgfile.CheckTokenMode through
	// providers.CheckTokenFile: writable by group or others, a foreign
	// owner; readable by others is how Kubernetes mounts it.
	token
)

// credentialFileKinds classifies every file setting of every compiled-in
// provider ("PROVIDER: PATH", PATH as sourceSettings finds it). A Vault
// login's files, wherever a server: mapping is (vault, vault-pki, each
// jwtsign transit key), are "VAULT: auth.KEY", the token_file by login
// method. A file setting not here fails TestEveryCredentialFileModeJudged.
var credentialFileKinds = map[string]fileKind{
	"awssts: ca_file":                 public,
	"awssts: web_identity_token_file": token,
	// Holds the key too unless private_key says otherwise (Provision);
	// TestEveryCredentialFileModeJudged tries it with the key apart.
	"azure: client_certificate.file":               secret,
	"azure: client_certificate.private_key.file":   secret,
	"github-app: private_key.file":                 secret,
	"google: key.file":                             secret,
	"google: private_key.file":                     secret,
	"google: workload_identity.subject_token.file": token,
	"oauth2: client_key.file":                      secret,
	"salesforce: private_key.file":                 secret,
	"snowflake: private_key.file":                  secret,
	"static: file":                                 secret,
	"static: fields.NAME.file":                     secret,
	"VAULT: auth.token_file token":                 secret,
	"VAULT: auth.token_file kubernetes":            token,
	"VAULT: auth.token_file jwt":                   token,
	"VAULT: auth.role_id_file approle":             secret,
	"VAULT: auth.secret_id_file approle":           secret,
}

// fileModeCase is one mode (and owner, and path shape) a credential file
// is given, with whether a secret and a token warn.
type fileModeCase struct {
	mode        os.FileMode
	foreign     bool // owned by another user than root and the gateway's
	linked      bool // reached through Kubernetes' ..data link chain
	secretWarns bool
	tokenWarns  bool
}

func (c fileModeCase) String() string {
	s := fmt.Sprintf("%04o", uint32(c.mode))
	if c.foreign {
		s += "-foreign"
	}
	if c.linked {
		s += "-linked"
	}
	return s
}

var fileModeCases = []fileModeCase{
	{mode: 0o400}, {mode: 0o440}, {mode: 0o600}, {mode: 0o640},
	{mode: 0o644, secretWarns: true},
	{mode: 0o604, secretWarns: true},
	{mode: 0o666, secretWarns: true, tokenWarns: true},
	{mode: 0o620, secretWarns: true, tokenWarns: true},
	{mode: 0o602, secretWarns: true, tokenWarns: true},
	{mode: 0o640, linked: true},
	{mode: 0o644, linked: true, secretWarns: true},
	{mode: 0o664, linked: true, secretWarns: true, tokenWarns: true},
	{mode: 0o600, foreign: true, secretWarns: true, tokenWarns: true},
	{mode: 0o644, foreign: true, linked: true, secretWarns: true, tokenWarns: true},
}

// writeCredentialFile writes content to a file of mode c.mode (owned by
// uid 4242 when c.foreign) in a new directory, reached directly or, when
// c.linked, as Kubernetes builds a Secret volume (key -> ..data/key,
// ..data -> ..TIMESTAMP); it returns the path a setting names.
func writeCredentialFile(t *testing.T, c fileModeCase, content string) string {
	t.Helper()
	dir := t.TempDir()
	target := filepath.Join(dir, "key")
	if c.linked {
		ts := filepath.Join(dir, "..2026_12_05_02_00_00.000000001")
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		target = filepath.Join(ts, "key")
		if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", "key"), filepath.Join(dir, "key")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(target, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(target, c.mode); err != nil {
		t.Fatal(err)
	}
	if c.foreign {
		if err := os.Chown(target, 4242, 4242); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "key")
}

// TestEveryCredentialFileModeJudged is the class "a policy credential's
// file others may read or write is named": for every file setting of
// every compiled-in provider (found from the settings' yaml keys, as
// TestEverySourceIsChecked finds them, so a new one counts and must be
// classified in credentialFileKinds) × modes, owners and the ..data link
// chain, CheckSources reports exactly one Warning at that setting when
// the file's kind warns (a secret: others may read, group or others may
// write, another user owns; a token: only write and owner), wrapping
// providers.ErrLooseMode and not ErrNotConfigured, whose words name the
// setting, the file, its mode and the fix and never the file's content;
// and nothing otherwise. A foreign owner is tried only as root.
func TestEveryCredentialFileModeJudged(t *testing.T) {
	root := os.Geteuid() == 0
	classified := map[string]bool{}
	judged := 0
	for _, name := range providers.Names() {
		m, _ := providers.Lookup(name)
		var paths []string
		sourceSettings(reflect.TypeOf(m.New()), "", 0, &paths)
		for _, path := range paths {
			key := path[strings.LastIndex(path, ".")+1:]
			if key == "env" || strings.HasSuffix(key, "_env") {
				continue
			}
			var variants []struct{ class, method string }
			if i := strings.Index(path, "auth."); i >= 0 {
				methods := []string{"approle"}
				if key == "token_file" {
					methods = []string{"token", "kubernetes", "jwt"}
				}
				for _, method := range methods {
					variants = append(variants, struct{ class, method string }{"VAULT: " + path[i:] + " " + method, method})
				}
			} else {
				variants = append(variants, struct{ class, method string }{name + ": " + path, ""})
			}
			for _, v := range variants {
				kind, ok := credentialFileKinds[v.class]
				if !ok {
					t.Errorf("%s: %s (%s) is a file setting credentialFileKinds does not classify: check it in the provider's CheckSources with providers.CheckSecretFile (a secret), providers.CheckTokenFile (a service-account token) or providers.CheckFile (not a secret), and add it here", name, path, v.class)
					continue
				}
				classified[v.class] = true
				for _, tc := range fileModeCases {
					if tc.foreign && !root {
						continue
					}
					content := fmt.Sprintf("content-never-printed-%s-%s", name, tc)
					file := writeCredentialFile(t, tc, content)
					p := newWithFile(t, name, path, v.method, file)
					sps := p.(providers.SourceChecker).CheckSources()
					warn := kind == secret && tc.secretWarns || kind == token && tc.tokenWarns
					judged++
					what := fmt.Sprintf("%s: %s (%s) at %s", name, path, v.method, tc)
					if !warn {
						if len(sps) != 0 {
							t.Errorf("%s: CheckSources = %v, want nothing", what, sps)
						}
						continue
					}
					if len(sps) != 1 {
						t.Errorf("%s: CheckSources = %v, want one warning", what, sps)
						continue
					}
					sp := sps[0]
					msg := sp.Err.Error()
					setting := strings.ReplaceAll(path, "NAME", "api_key")
					if sp.Setting != setting || !sp.Warning || !errors.Is(sp.Err, providers.ErrLooseMode) || errors.Is(sp.Err, providers.ErrNotConfigured) {
						t.Errorf("%s: %+v, want a Warning at %s wrapping ErrLooseMode only", what, sp, setting)
					}
					for _, want := range []string{setting + ": ", file, fmt.Sprintf("mode %04o", uint32(tc.mode)), "chmod 0400 " + file, "defaultMode"} {
						if !strings.Contains(msg, want) {
							t.Errorf("%s: %q does not say %q", what, msg, want)
						}
					}
					if tc.foreign && !strings.Contains(msg, "owned by uid 4242") {
						t.Errorf("%s: %q does not name the owner", what, msg)
					}
					if kind == token && strings.Contains(msg, "readable by others") {
						t.Errorf("%s: %q judges a token's read bit", what, msg)
					}
					if strings.Contains(msg, content) {
						t.Errorf("%s: the warning holds the file's content: %q", what, msg)
					}
				}
			}
		}
	}
	for class := range credentialFileKinds {
		if !classified[class] {
			t.Errorf("credentialFileKinds has %q, which no provider's settings name: remove it", class)
		}
	}
	if judged < 200 {
		t.Errorf("only %d settings × modes judged; the walk over the providers' settings is broken", judged)
	}

	// A certificate whose key is elsewhere is not a secret: 0644 is fine.
	// Its key file is judged.
	t.Run("azure certificate apart from its key", func(t *testing.T) {
		cert := writeCredentialFile(t, fileModeCase{mode: 0o644}, "certificate")
		key := writeCredentialFile(t, fileModeCase{mode: 0o644}, "key-never-printed")
		p := newWithFile(t, "azure", "client_certificate.file", "", cert)
		if !setSetting(reflect.ValueOf(p), strings.Split("client_certificate.private_key.file", "."), key) {
			t.Fatal("cannot set client_certificate.private_key.file")
		}
		sps := p.(providers.SourceChecker).CheckSources()
		if len(sps) != 1 || sps[0].Setting != "client_certificate.private_key.file" || !sps[0].Warning {
			t.Errorf("CheckSources = %+v, want one warning at client_certificate.private_key.file", sps)
		}
	})
}

// newWithFile returns a new provider name whose setting path names file
// (a static field's by decoding its fields mapping), with the Vault
// login method that reads it when method is not "".
func newWithFile(t *testing.T, name, path, method, file string) providers.Provider {
	t.Helper()
	m, _ := providers.Lookup(name)
	p := m.New()
	if strings.Contains(path, "NAME.") {
		doc := map[string]any{"fields": map[string]any{"api_key": map[string]any{"file": file}}}
		b, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, p); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return p
	}
	v := reflect.ValueOf(p)
	if !setSetting(v, strings.Split(path, "."), file) {
		t.Fatalf("%s: cannot set %s", name, path)
	}
	if method != "" {
		i := strings.Index(path, "auth.")
		setSetting(v, strings.Split(path[:i]+"auth.method", "."), method)
	}
	return p
}
