//go:build !windows

package gateway

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/credgate/credgate/identity"
)

// notSecretFiles are the file settings of the config (fileSettingsOf) that
// neither secretSettings nor tokenSettings judges, and why.
var notSecretFiles = map[string]string{
	"admin.state_file":               "the kill switches in force, no secret (written by the gateway, 0600)",
	"identity.jwt.issuers[].ca_file": "a CA bundle, which anyone may read",
	"identity.kubernetes.ca_file":    "a CA bundle, which anyone may read",
	"identity.posture.ca_file":       "a CA bundle, which anyone may read",
}

// withTokenFiles is every (everyFileConfig) naming each of identity's
// token files (tokenSettings) too.
func withTokenFiles(t *testing.T, every *Config, f func(name string) string) *Config {
	t.Helper()
	if len(every.Identity.JWT.Issuers) != 1 || every.Identity.Posture == nil {
		t.Fatal("everyFileConfig names no jwt issuer or no posture feed")
	}
	every.Identity.JWT.Issuers[0].BearerTokenFile = f("jwks.bearer")
	every.Identity.Posture.BearerTokenFile = f("posture.bearer")
	every.Identity.Kubernetes = &identity.KubernetesConfig{TokenFile: f("sa.token")}
	return every
}

// TestSecretSettingsClassified: every file setting the config can name
// (everyFileConfig names each one namedFiles knows) is in secretSettings,
// secret or not, and every entry there is one namedFiles lists; every
// token file of identity (tokenFiles) is in tokenSettings and each entry
// there is one tokenFiles lists; and every setting of the config's types
// whose key names a file ("file", "*_file": fileSettingsOf) is in one of
// the two or in notSecretFiles with its reason, so a new token setting
// fails here until its mode is judged.
func TestSecretSettingsClassified(t *testing.T) {
	dir := t.TempDir()
	name := func(name string) string { return filepath.Join(dir, name) }
	every := withTokenFiles(t, everyFileConfig(t, name), name)
	seen := map[string]bool{}
	for _, nf := range every.namedFiles() {
		class := settingClass(nf.keys)
		seen[class] = true
		if _, ok := secretSettings[class]; !ok {
			t.Errorf("%s (%s) is a file setting secretSettings does not classify: add it, true when the file holds a secret (its mode is judged), false for a certificate, a CA bundle or a policy", keyPath(nf.keys...), class)
		}
	}
	for class := range secretSettings {
		if !seen[class] {
			t.Errorf("secretSettings has %q, which namedFiles does not list: remove it (or name it in everyFileConfig)", class)
		}
	}
	seenTokens := map[string]bool{}
	for _, nf := range every.tokenFiles() {
		class := settingClass(nf.keys)
		seenTokens[class] = true
		if !tokenSettings[class] {
			t.Errorf("%s (%s) is a token file tokenSettings does not list", keyPath(nf.keys...), class)
		}
	}
	for class := range tokenSettings {
		if !seenTokens[class] {
			t.Errorf("tokenSettings has %q, which tokenFiles does not list: remove it (or name it in withTokenFiles)", class)
		}
	}
	settings := fileSettingsOf(reflect.TypeFor[Config]())
	if len(settings) < 15 {
		t.Fatalf("only %d file settings found in Config's yaml tags: %v", len(settings), settings)
	}
	used := map[string]bool{}
	for _, s := range settings {
		_, secret := secretSettings[s]
		switch {
		case secret, tokenSettings[s]:
		case notSecretFiles[s] != "":
			used[s] = true
		default:
			t.Errorf("%s names a file whose mode nothing judges: list it in namedFiles and secretSettings (a secret the gateway reads at start), in tokenFiles and tokenSettings (a service-account token read at each fetch), or in notSecretFiles with the reason", s)
		}
	}
	for s := range notSecretFiles {
		if !used[s] {
			t.Errorf("notSecretFiles has %q, which is no file setting of Config or is judged: remove it", s)
		}
	}
}

// secretModeCases are the modes tried on each secret setting, with
// whether the gateway warns: group-readable (fsGroup; the chart mounts
// 0440) is fine, readable by others or writable by group or others is
// not.
var secretModeCases = []struct {
	mode os.FileMode
	warn bool
}{
	{0o400, false}, {0o440, false}, {0o600, false}, {0o640, false},
	{0o644, true}, {0o666, true}, {0o604, true}, {0o620, true},
}

// tokenModeCases are the modes tried on each token file of identity
// (tokenSettings): readable by others is fine (Kubernetes mounts a
// service-account token 0644), writable by group or others is not.
var tokenModeCases = []struct {
	mode os.FileMode
	warn bool
}{
	{0o400, false}, {0o440, false}, {0o644, false}, {0o444, false},
	{0o664, true}, {0o646, true}, {0o620, true}, {0o666, true},
}

// TestSecretModeWarnings is the class "a secret file of the config that
// others may read or write is named": for every secret setting
// (secretSettings) × mode, Config.SecretModeWarnings warns at exactly that
// setting, naming it, the file, its mode and the fix, never the file's
// content; Gateway.warnSecretModes logs the same once per file and sets
// credgate_secret_files_loose_mode. Files that hold no secret (certificates,
// CA bundles, the policy) get no warning at 0644. Identity's token files
// (tokenSettings) × tokenModeCases likewise: warned when the group or
// others may write them, never for others reading them.
func TestSecretModeWarnings(t *testing.T) {
	dir := t.TempDir()
	content := func(name string) string { return "secret-content-of-" + name }
	paths := map[string]string{} // setting class => file
	write := func(name string) string { return writeFile(t, dir, name, []byte(content(name))) }
	every := withTokenFiles(t, everyFileConfig(t, write), write)
	var secrets, tokens []string
	for _, nf := range every.namedFiles() {
		class := settingClass(nf.keys)
		paths[keyPath(nf.keys...)] = nf.path
		if secretSettings[class] {
			secrets = append(secrets, keyPath(nf.keys...))
		}
	}
	for _, nf := range every.tokenFiles() {
		paths[keyPath(nf.keys...)] = nf.path
		tokens = append(tokens, keyPath(nf.keys...))
	}
	sort.Strings(secrets)
	if len(secrets) < 12 || len(tokens) != len(tokenSettings) {
		t.Fatalf("only %d secret settings: %v; %d token settings: %v", len(secrets), secrets, len(tokens), tokens)
	}
	// chmodAll sets every file: secrets to secretMode, the others
	// (certificates, bundles, tokens) to otherMode.
	chmodAll := func(secretMode, otherMode os.FileMode) {
		for key, p := range paths {
			m := otherMode
			for _, s := range secrets {
				if s == key {
					m = secretMode
				}
			}
			if err := os.Chmod(p, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	chmodAll(0o400, 0o644)
	if ws := every.SecretModeWarnings(); len(ws) != 0 {
		t.Fatalf("secrets 0400, certificates, bundles and service-account tokens 0644: warnings %v, want none", ws)
	}

	cases := func(key string) []struct {
		mode os.FileMode
		warn bool
	} {
		if slices.Contains(tokens, key) {
			return tokenModeCases
		}
		return secretModeCases
	}
	for _, key := range append(secrets, tokens...) {
		for _, tc := range cases(key) {
			t.Run(fmt.Sprintf("%s/%04o", key, uint32(tc.mode)), func(t *testing.T) {
				chmodAll(0o400, 0o644)
				file := paths[key]
				if err := os.Chmod(file, tc.mode); err != nil {
					t.Fatal(err)
				}
				ws := every.SecretModeWarnings()
				var logBuf bytes.Buffer
				g := &Gateway{log: slog.New(slog.NewTextHandler(&logBuf, nil)), metrics: newMetrics(func() float64 { return 0 })}
				g.warnSecretModes(every)
				if gauge := gaugeValue(t, g.metrics.secretLooseMode); gauge != float64(len(ws)) {
					t.Errorf("credgate_secret_files_loose_mode = %v, want %d", gauge, len(ws))
				}
				if !tc.warn {
					if len(ws) != 0 || logBuf.Len() != 0 {
						t.Fatalf("warnings %v, log %q; want none", ws, logBuf.String())
					}
					return
				}
				if len(ws) != 1 {
					t.Fatalf("warnings %v, want one at %s", ws, key)
				}
				msg := ws[0].Msg
				for _, want := range []string{key + ": ", file, fmt.Sprintf("mode %04o", uint32(tc.mode)), "chmod 0400 " + file, "defaultMode"} {
					if !strings.Contains(msg, want) {
						t.Errorf("warning %q does not say %q", msg, want)
					}
				}
				logged := logBuf.String()
				if strings.Count(logged, "\n") != 1 || !strings.Contains(logged, "setting="+key) {
					t.Errorf("log %q: want one line naming setting=%s", logged, key)
				}
				for _, out := range []string{msg, logged} {
					if strings.Contains(out, "secret-content-of-") {
						t.Errorf("a file's content is in %q", out)
					}
				}
			})
		}
	}
}

// TestSecretModeLoggedOncePerLoad: serve judges the secret files when it
// starts and when it re-reads its config (SIGHUP), not when it reads a
// secret: an admin token of mode 0644, read at each of 5 admin requests,
// is logged once at start and once per config re-read, and the gauge
// follows the file's mode.
func TestSecretModeLoggedOncePerLoad(t *testing.T) {
	const token = "loose-mode-token-0123456789abcdef"
	tokFile := filepath.Join(t.TempDir(), "admin.token")
	writeFile(t, filepath.Dir(tokFile), "admin.token", []byte(token))
	if err := os.Chmod(tokFile, 0o644); err != nil {
		t.Fatal(err)
	}
	tg := startSwitchGateway(t, "admin:\n  token_file: "+tokFile+"\n")
	const msg = "secret file readable or writable by others"
	count := func() int { return strings.Count(tg.logs.String(), msg) }
	if got := count(); got != 1 {
		t.Fatalf("%d warnings at start, want 1:\n%s", got, tg.logs.String())
	}
	if !strings.Contains(tg.logs.String(), "admin.token_file") {
		t.Errorf("the warning does not name admin.token_file:\n%s", tg.logs.String())
	}
	for range 5 {
		if st, code, body := adminCall(t, tg, "/admin/v1/disable", token, `{"kind":"rule"}`); st == http.StatusUnauthorized || st == http.StatusServiceUnavailable {
			t.Fatalf("admin call: %d %s %v", st, code, body)
		}
	}
	if got := count(); got != 1 {
		t.Fatalf("%d warnings after 5 admin requests, want 1 (not one per read)", got)
	}
	if g := gaugeValue(t, tg.gw.metrics.secretLooseMode); g != 1 {
		t.Errorf("credgate_secret_files_loose_mode = %v, want 1", g)
	}
	next, err := LoadConfig(tg.gw.cfg.File())
	if err != nil {
		t.Fatal(err)
	}
	reloadConfig(t, tg.gw, next)
	if got := count(); got != 2 {
		t.Errorf("%d warnings after a config re-read, want 2", got)
	}
	if err := os.Chmod(tokFile, 0o400); err != nil {
		t.Fatal(err)
	}
	reloadConfig(t, tg.gw, next)
	if got, g := count(), gaugeValue(t, tg.gw.metrics.secretLooseMode); got != 2 || g != 0 {
		t.Errorf("after chmod 0400 and a re-read: %d warnings (want 2), gauge %v (want 0)", got, g)
	}
	if strings.Contains(tg.logs.String(), token) {
		t.Errorf("the log holds the admin token")
	}
}

// TestPolicySecretModeLoggedOncePerLoad: serve judges the policy's
// credential files when it loads a policy (at start and at each reload),
// not when it fetches a credential: a static credential's file: of mode
// 0644, read for 5 injected requests, is logged once at start and once
// per policy reload, at the policy file's line, naming the credential,
// the setting, the file and its mode, never its content; the gauge counts
// it with the config's loose secret files (an admin token of mode 0644
// here), each kept across the other's re-read, and follows the chmod.
func TestPolicySecretModeLoggedOncePerLoad(t *testing.T) {
	pki := newTestPKI(t, apiHost, tunnelHost, "credgate.test")
	tg := newTestGateway(t, pki, startOrigin(t, pki))
	credFile := writeFile(t, tg.dir, "token.cred", []byte(tg.token+"\n"))
	adminFile := writeFile(t, tg.dir, "admin.token", []byte("loose-admin-token-0123456789abcdef"))
	for _, f := range []string{credFile, adminFile} {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const envLine = "    provider: static\n    env: CREDGATE_GATEWAY_TEST_TOKEN\n"
	if strings.Count(testPolicy, envLine) != 1 {
		t.Fatalf("testPolicy's token credential is not %q", envLine)
	}
	pol := strings.Replace(testPolicy, envLine, "    provider: static\n    file: "+credFile+"\n", 1)
	polPath := writeFile(t, tg.dir, "policy.yaml", []byte(pol))
	tg.run(t, fmt.Sprintf("resolve:\n  \"api.origin.test:443\": %q\n  \"tunnel.origin.test:443\": %q\nadmin:\n  token_file: %s\n", tg.origin.addr, tg.origin.addr, adminFile))

	const msg = "credential file readable or writable by others than the gateway's user"
	count := func() int { return strings.Count(tg.logs.String(), msg) }
	line := 0
	for i, l := range strings.Split(pol, "\n") {
		if strings.Contains(l, "file: "+credFile) {
			line = i + 1
		}
	}
	if got := count(); got != 1 {
		t.Fatalf("%d warnings at start, want 1:\n%s", got, tg.logs.String())
	}
	for _, want := range []string{fmt.Sprintf("%s:%d:11", polPath, line), `credential \"token\": static: file: ` + credFile + " has mode 0644", "chmod 0400 " + credFile} {
		if !strings.Contains(tg.logs.String(), want) {
			t.Errorf("the warning does not say %q:\n%s", want, tg.logs.String())
		}
	}
	gauge := func() float64 { return gaugeValue(t, tg.gw.metrics.secretLooseMode) }
	if g := gauge(); g != 2 {
		t.Errorf("credgate_secret_files_loose_mode = %v, want 2 (the admin token and the credential file)", g)
	}

	c := tg.client(t, false)
	for i := range 5 {
		resp, err := c.Get(fmt.Sprintf("https://%s/v1/loose/%d", apiHost, i))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %s", i, resp.Status)
		}
	}
	if got := tg.origin.all(); len(got) != 5 || got[4].Header.Get("Authorization") != "Bearer "+tg.token {
		t.Fatalf("origin saw %d requests, want 5 with the file's credential", len(got))
	}
	if got := count(); got != 1 {
		t.Fatalf("%d warnings after 5 requests, want 1 (not one per fetch)", got)
	}

	ctx := context.Background()
	if err := tg.gw.ReloadPolicy(ctx); err != nil {
		t.Fatal(err)
	}
	if got, g := count(), gauge(); got != 2 || g != 2 {
		t.Errorf("after a policy reload: %d warnings (want 2), gauge %v (want 2)", got, g)
	}
	// A config re-read judges its own files and keeps the policy's count.
	next, err := LoadConfig(tg.gw.cfg.File())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(adminFile, 0o400); err != nil {
		t.Fatal(err)
	}
	reloadConfig(t, tg.gw, next)
	if g := gauge(); g != 1 {
		t.Errorf("after chmod 0400 of the admin token and a config re-read: gauge %v, want 1 (the credential file)", g)
	}
	if err := os.Chmod(credFile, 0o400); err != nil {
		t.Fatal(err)
	}
	if err := tg.gw.ReloadPolicy(ctx); err != nil {
		t.Fatal(err)
	}
	if got, g := count(), gauge(); got != 2 || g != 0 {
		t.Errorf("after chmod 0400 of the credential file and a policy reload: %d warnings (want 2), gauge %v (want 0)", got, g)
	}
}

// fileSettingsOf lists the settings of config type typ (found from its
// yaml keys, yamlKey) whose key names a file: "file" or ending in "_file", written
// as secretSettings' keys (a list's "[]", a map's "*").
func fileSettingsOf(typ reflect.Type) []string {
	var out []string
	var walk func(t reflect.Type, prefix string, depth int)
	walk = func(t reflect.Type, prefix string, depth int) {
		if depth > 12 {
			return
		}
		switch t.Kind() {
		case reflect.Pointer:
			walk(t.Elem(), prefix, depth+1)
			return
		case reflect.Slice, reflect.Array:
			walk(t.Elem(), prefix+"[]", depth+1)
			return
		case reflect.Map:
			walk(t.Elem(), prefix+".*", depth+1)
			return
		case reflect.Struct:
		default:
			return
		}
		for i := range t.NumField() {
			f := t.Field(i)
			name, inline, ok := yamlKey(f)
			switch {
			case !ok:
				continue
			case inline:
				walk(f.Type, prefix, depth+1)
				continue
			}
			key := name
			if prefix != "" {
				key = prefix + "." + name
			}
			if f.Type.Kind() == reflect.String && (name == "file" || strings.HasSuffix(name, "_file")) {
				out = append(out, key)
				continue
			}
			walk(f.Type, key, depth+1)
		}
	}
	walk(typ, "", 0)
	sort.Strings(out)
	return out
}
