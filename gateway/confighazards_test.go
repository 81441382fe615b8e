package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credgate/credgate/gateway/mitm"
	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/internal/cfgfile/cfgfiletest"
	"github.com/credgate/credgate/internal/filewatch"
)

// configErrors flattens what ParseConfig returned into its ConfigErrors,
// failing on anything else.
func configErrors(t testing.TB, err error) []*ConfigError {
	t.Helper()
	var out []*ConfigError
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var ce *ConfigError
		if !errors.As(e, &ce) {
			t.Fatalf("error %T %v is not a *ConfigError", e, e)
		}
		out = append(out, ce)
	}
	walk(err)
	return out
}

// TestConfigYAMLHazards is the class of YAML input that a loader can read
// otherwise than its author meant: each is refused at a position with a
// fix, or read as meant. Before, a second document ("---") was dropped
// unread (its settings and its mistakes), a file that is not UTF-8 had no
// line, and a tab in an indentation no fix.
func TestConfigYAMLHazards(t *testing.T) {
	const base = "policy: p.yaml\nca: {cert: c.pem, key: k.pem}\n"
	for _, c := range []struct {
		name, in string
		want     string // "" accepted; else the joined errors contain it
	}{
		{"second document with a setting", base + "---\nlisten: \":1\"\n", "c.yaml:3:1: only one YAML document is allowed in a config file"},
		{"second document with a mistake", base + "---\nbogus: 1\n", "c.yaml:3:1: only one YAML document is allowed"},
		{"trailing separator", base + "---\n", "only one YAML document is allowed"},
		{"document end marker", base + "...\n", ""},
		{"byte order mark", "\ufeff" + base, ""},
		{"not UTF-8", base + "listen: \"\xff\xfe\"\n", "c.yaml:3:10: invalid YAML: the file is not UTF-8 text (byte 0xFF here); save it as UTF-8"},
		{"Latin-1 comment", "# caf\xe9\n" + base, "c.yaml:1:6: invalid YAML: the file is not UTF-8 text"},
		{"tab indentation", base + "upstream:\n\tdial_timeout: 1s\n", "c.yaml:4:1: invalid YAML: a tab in the indentation"},
		{"tab after spaces", base + "upstream:\n  dial_timeout: 1s\n \t idle_conn_timeout: 1s\n", "c.yaml:5:2: invalid YAML: a tab in the indentation"},
		{"duplicate key", base + "listen: \":1\"\nlisten: \":2\"\n", `c.yaml:4:9: listen: mapping key "listen" already defined at line 3`},
		{"duplicate nested key", base + "upstream: {dial_timeout: 1s, dial_timeout: 2s}\n", `mapping key "dial_timeout" already defined`},
		{"unknown key", base + "upstrem: {}\n", `c.yaml:3:1: unknown field "upstrem"; known fields are`},
		{"unknown key in a merge", "x: &x {bogus: 1s}\n" + base + "upstream: {<<: *x}\n", `c.yaml:1:8: unknown field "bogus"`},
		{"duration without unit", base + "upstream: {dial_timeout: 10}\n", "upstream.dial_timeout: want a duration"},
		{"negative duration", base + "upstream: {dial_timeout: -1s}\n", "not negative"},
		{"size with a unit", base + "limits: {max_header_bytes: 10MB}\n", "limits.max_header_bytes: want a whole number"},
		{"octal size", "policy: p.yaml\nca: {cert: c.pem, key: k.pem, leaf_cache_size: 01024}\n", "c.yaml:2:48: leaf_cache_size: a number with a leading zero is read by YAML as octal (0443 is 291); write it without the leading zero"},
		{"octal size with a sign", "policy: p.yaml\nca: {cert: c.pem, key: k.pem}\nlimits: {max_header_bytes: +065536}\n", "c.yaml:3:28: max_header_bytes: a number with a leading zero"},
		{"hexadecimal size", "policy: p.yaml\nca: {cert: c.pem, key: k.pem}\nlimits: {max_header_bytes: 0x10000}\n", ""},
		{"plain size", "policy: p.yaml\nca: {cert: c.pem, key: k.pem}\nlimits: {max_header_bytes: 65536}\n", ""},
		{"yes as a boolean", base + "audit: {chain: yes}\n", "c.yaml:3:16: audit.chain: yes is a boolean to YAML 1.1 readers (yaml.v3 takes it as one) and text to YAML 1.2 readers"},
		{"off quoted as a boolean", base + "tracing: {insecure: \"off\"}\n", "c.yaml:3:21: tracing.insecure: off is a boolean"},
		{"true as a boolean", base + "audit: {chain: true}\n", ""},
		{"no as a listen address", base + "listen: no\n", `listen: "no" is not host:port`},
		{"port out of range", base + "listen: \":70000\"\n", "is not host:port"},
		{"billion laughs", "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n" + base, `c.yaml:1:1: unknown field "a"`},
		{"billion laughs, deeper", "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n" + base, "c.yaml:6:29: YAML aliases (*name) expand this gateway config by more than 1000000 values"},
		{"aliases that multiply", base + "identity: {jwt: {issuers: [&i {audiences: [&a x" + strings.Repeat(", *a", 1100) + "]}" + strings.Repeat(", *i", 1100) + "]}}\n", "c.yaml:3:8068: YAML aliases (*name) expand this gateway config by more than 1000000 values"},
		{"deep nesting", base + "upstream: " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + "\n", "upstream: want a mapping"},
		{"not a mapping", "- a\n", "c.yaml:1:1: the config must be a YAML mapping"},
		{"empty", "", "empty config"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			_, err := ParseConfig(path, []byte(c.in))
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want %q", c.want)
			}
			configErrors(t, err)
			if got := strings.ReplaceAll(err.Error(), filepath.Dir(path)+string(os.PathSeparator), ""); !strings.Contains(got, c.want) {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

// FuzzParseConfig checks that no config makes ParseConfig panic and that
// every rejection is made of ConfigErrors naming the file and, but for an
// empty file, a line.
func FuzzParseConfig(f *testing.F) {
	for _, name := range []string{"../examples/credgate.yaml"} {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("policy: p.yaml\nca: {cert: c.pem, key: k.pem}\n---\nlisten: x\n"))
	f.Add([]byte("policy: p.yaml\nca:\n\tcert: c.pem\n"))
	f.Add([]byte("x: &x {dial_timeout: 1s}\nupstream: {<<: *x}\nresolve: {\"a:1\": \"127.0.0.1:1\"}\n"))
	f.Add([]byte("cache: {redis: {addrs: [\"r:6379\"], encryption_keys: [{id: k, env: E}]}}\n"))
	f.Add([]byte("admin: {token_file: t, tls: {cert: a, key: b}}\ntracing: {enabled: true}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ParseConfig("/fuzz/c.yaml", data)
		if err == nil {
			return
		}
		for _, ce := range configErrors(t, err) {
			if ce.File != "/fuzz/c.yaml" || ce.Msg == "" {
				t.Fatalf("bad error %q", ce.Error())
			}
			if ce.Line <= 0 && !strings.HasPrefix(ce.Msg, "empty config") {
				t.Fatalf("error without a line: %q", ce.Error())
			}
		}
	})
}

// TestLoadConfigNotAFile: a config path that is not a regular file is
// refused at once, saying what it is (a named pipe used to block
// LoadConfig in read(2) until a writer came; a link to /dev/zero read
// until memory ran out).
func TestLoadConfigNotAFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.yaml")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		dir:  "is a directory, not a regular file",
		fifo: "is a named pipe (FIFO), not a regular file",
		zero: "is a device, not a regular file",
	} {
		if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadConfig(%s) = %v, want %q", path, err, want)
		}
	}
}

// TestSecretFilesNotRegular is the class "a secret file that is not one":
// the admin token (read at start and again at every admin request that
// presents a bearer token, unauthenticated ones included), the Redis
// password and encryption key files all go through readSecret, which
// must refuse a named pipe (its read waits for a writer forever), a link
// to /dev/zero (read until memory runs out), a directory and a file far
// larger than a secret, promptly and saying what the path is.
func TestSecretFilesNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := cfgfiletest.Fifo(t, dir, "token.fifo")
	zero := cfgfiletest.DevZero(t, dir, "token.zero")
	big := cfgfiletest.Sparse(t, dir, "token.big", 1<<20)
	subdir := filepath.Join(dir, "token.d")
	if err := os.Mkdir(subdir, 0o700); err != nil {
		t.Fatal(err)
	}
	caCert, caKey, err := mitm.WriteCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "policy.yaml", []byte(testPolicy))
	kinds := []struct{ name, path, want string }{
		{"fifo", fifo, "is a named pipe (FIFO), not a regular file"},
		{"dev_zero", zero, "is a device, not a regular file"},
		{"directory", subdir, "is a directory"},
		{"too_large", big, "holds 1048576 bytes, more than the 65536 a secret file may"},
	}
	readers := []struct {
		name string
		read func(path string) error
	}{
		{"admin_token_at_start", func(p string) error {
			_, err := newAdminToken(Admin{TokenFile: p})
			return err
		}},
		{"admin_token_per_request", func(p string) error {
			r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/admin/v1/switches", nil)
			r.Header.Set("Authorization", "Bearer not-the-token-0123456789")
			err := (&adminToken{file: p}).check(r)
			if errors.Is(err, errWrongToken) {
				// The file was read as the token.
				return nil
			}
			return err
		}},
		{"redis_secret", func(p string) error {
			_, _, err := readSecret(p, "")
			return err
		}},
		{"validate", func(p string) error {
			// credgate validate and serve's preflight (Config.CheckFiles).
			cfg, err := ParseConfig(filepath.Join(dir, "credgate.yaml"), []byte(fmt.Sprintf("policy: policy.yaml\nca: {cert: %q, key: %q}\nadmin:\n  token_file: %q\n", caCert, caKey, p)))
			if err != nil {
				return err
			}
			return cfg.CheckFiles()
		}},
	}
	for _, k := range kinds {
		for _, rd := range readers {
			t.Run(k.name+"/"+rd.name, func(t *testing.T) {
				done := make(chan error, 1)
				go func() { done <- rd.read(k.path) }()
				select {
				case err := <-done:
					if err == nil || !strings.Contains(err.Error(), k.want) {
						t.Errorf("got %v, want an error saying %q", err, k.want)
					}
				case <-time.After(5 * time.Second):
					t.Errorf("still reading %s after 5s", k.path)
				}
			})
		}
	}
}

// TestConfigFilesNotRegular is the class "a file the config names that
// is not one", for every file the config names (namedFiles, read from
// the registration) and every reader that reads such a file while the
// gateway starts or runs: a named pipe (whose read waits for a writer
// forever), a link to /dev/zero (read until memory runs out) and, for
// the readers, a file larger than a config file may be. Each is refused
// promptly, saying what the path is and naming the key. Before,
// credgate validate, serve's start and a SIGHUP hung on a named pipe as
// upstream.ca_bundle, ca.cert or identity.posture.file, and the poller
// of a certificate, bundle, key set or posture file stopped for good on
// one swapped in while the gateway ran (only the secret files were
// refused: TestSecretFilesNotRegular).
func TestConfigFilesNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := cfgfiletest.Fifo(t, dir, "file.fifo")
	zero := cfgfiletest.DevZero(t, dir, "file.zero")
	big := cfgfiletest.Sparse(t, dir, "file.big", cfgfile.MaxBytes+1)
	// within runs read and fails the test unless it returns within 5s.
	within := func(t *testing.T, what string, read func() error) error {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- read() }()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: still reading after 5s", what)
			return nil
		}
	}

	// credgate validate and serve's preflight (CheckFiles), with each
	// named file in turn a named pipe or a link to /dev/zero.
	files := t.TempDir()
	var names []string
	everyFileConfig(t, func(name string) string {
		names = append(names, name)
		return writeFile(t, files, name, []byte("content of "+name+"\n"))
	})
	if len(names) < 20 {
		t.Fatalf("only %d files named; everyFileConfig misses some", len(names))
	}
	for _, k := range []struct{ name, path, want string }{
		{"fifo", fifo, "is a named pipe (FIFO), not a regular file"},
		{"dev_zero", zero, "is a device, not a regular file"},
	} {
		for _, name := range names {
			c := everyFileConfig(t, func(n string) string {
				if n == name {
					return k.path
				}
				return filepath.Join(files, n)
			})
			key := ""
			for _, nf := range c.namedFiles() {
				if nf.path == k.path {
					key = keyPath(nf.keys...)
				}
			}
			t.Run("validate/"+k.name+"/"+key, func(t *testing.T) {
				if key == "" {
					t.Fatalf("namedFiles does not name the file everyFileConfig calls %s", name)
				}
				err := within(t, "CheckFiles", c.CheckFiles)
				if want := key + ": " + k.path + " " + k.want; err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("CheckFiles with %s as %s: %v; want an error saying %q", key, k.name, err, want)
				}
			})
		}
	}

	// The readers of those files while the gateway starts and runs.
	regular := writeFile(t, dir, "regular.pem", []byte("not PEM, never parsed\n"))
	readers := []struct {
		name string
		read func(path string) error
	}{
		{"filewatch (certificates, CA pair, bundles, key sets, posture)", func(p string) error {
			_, err := (&filewatch.Reloader{Paths: []string{p}, What: "test file", Apply: func([][]byte) error { return nil }}).Load()
			return err
		}},
		{"upstream.ca_bundle (start and SIGHUP)", func(p string) error {
			_, err := loadUpstreamTrust(p)
			return err
		}},
		{"interception CA (start)", func(p string) error {
			_, err := mitm.LoadCA(p, p)
			return err
		}},
		{"interception CA (credgate explain)", func(p string) error {
			_, err := (&Config{CA: CAConfig{Cert: p, Key: p}}).Issuer()
			return err
		}},
		{"fingerprint key (start)", func(p string) error {
			_, err := readKeyFile(p)
			return err
		}},
		{"cache.redis.tls.cert (start)", func(p string) error {
			_, err := redisOptions(Redis{TLS: RedisTLS{Enabled: true, Cert: p, Key: regular}})
			if err != nil && !strings.Contains(err.Error(), "cache.redis.tls.cert: "+p) {
				return fmt.Errorf("does not name the setting: %w", err)
			}
			return err
		}},
		{"cache.redis.tls.key (start)", func(p string) error {
			_, err := redisOptions(Redis{TLS: RedisTLS{Enabled: true, Cert: regular, Key: p}})
			if err != nil && !strings.Contains(err.Error(), "cache.redis.tls.key: "+p) {
				return fmt.Errorf("does not name the setting: %w", err)
			}
			return err
		}},
		{"SIGHUP digest of a start-only file", func(p string) error {
			if fileDigest(p) != ([32]byte{}) {
				return errors.New("digested")
			}
			// Not read (the zero digest): what each kind below says.
			return errors.New("not a regular file: bytes, more than allowed")
		}},
	}
	for _, k := range []struct{ name, path, want string }{
		{"fifo", fifo, "not a regular file"},
		{"dev_zero", zero, "not a regular file"},
		{"too_large", big, "bytes, more than"},
	} {
		for _, rd := range readers {
			t.Run("read/"+k.name+"/"+rd.name, func(t *testing.T) {
				err := within(t, rd.name, func() error { return rd.read(k.path) })
				if err == nil || !strings.Contains(err.Error(), k.want) {
					t.Errorf("got %v, want an error saying %q", err, k.want)
				}
			})
		}
	}
}
