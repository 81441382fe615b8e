package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// configSetting is one key of the gateway config: its dotted YAML path
// and the struct field indexes that reach it from Config.
type configSetting struct {
	key   string
	index []int
}

// configSettings lists every setting of t, a config struct type: a
// struct (or pointer to one) that decodes field by field is descended
// into; everything else — a value, a list, a map, a type that decodes
// itself (Duration) — is one setting.
func configSettings(t reflect.Type, prefix string, index []int) []configSetting {
	var out []configSetting
	unmarshaler := reflect.TypeFor[yaml.Unmarshaler]()
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		key := prefix + name
		sub := key + "."
		if strings.Contains(opts, "inline") {
			key, sub = strings.TrimSuffix(prefix, "."), prefix
		}
		idx := append(slices.Clone(index), i)
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(unmarshaler) && ft != reflect.TypeFor[yaml.Node]() {
			if inner := configSettings(ft, sub, idx); len(inner) > 0 {
				out = append(out, inner...)
				continue
			}
		}
		out = append(out, configSetting{key: key, index: idx})
	}
	return out
}

// settingValue is the field of cfg at index, allocating nil blocks on
// the way.
func settingValue(cfg *Config, index []int) reflect.Value {
	v := reflect.ValueOf(cfg).Elem()
	for n, i := range index {
		v = v.Field(i)
		if n < len(index)-1 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
	}
	return v
}

// changeValue gives v another value of its type: a string grows, a
// number goes up, a switch flips, a list or map gains an element, a nil
// pointer is set. It reports false for a value it cannot change.
func changeValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "-changed")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(v.Float() + 1)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
			return true
		}
		return changeValue(v.Elem())
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.New(v.Type().Elem()).Elem()))
	case reflect.Map:
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		k := reflect.New(v.Type().Key()).Elem()
		if !changeValue(k) {
			return false
		}
		v.SetMapIndex(k, reflect.New(v.Type().Elem()).Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() && changeValue(v.Field(i)) {
				return true
			}
		}
		return false
	default:
		return false
	}
	return true
}

// namesSetting reports whether keys name key, or a block that holds it.
func namesSetting(keys []string, key string) bool {
	return slices.ContainsFunc(keys, func(k string) bool { return k == key || strings.HasPrefix(key, k+".") })
}

// TestReloadEveryConfigKey: the class "a setting changed on a config
// reload (SIGHUP re-reads the file) is applied, or the reload says so
// loudly; never silently ignored", for every key of the gateway config
// (the same keys TestChartSetsEveryConfigKey walks). Each key is changed
// alone in a re-read config: the reload names it (or the block that
// holds it) as waiting for a restart in a warning, in
// credgate_config_restart_pending and in /readyz's detail — unless the
// key is one the reload applies (reloadedSettings), whose behaviour its
// own test checks (TestReloadUpstreamCABundle).
func TestReloadEveryConfigKey(t *testing.T) {
	const token = "reload-token-0123456789abcdef"
	tokFile := filepath.Join(t.TempDir(), "admin.token")
	writeFile(t, filepath.Dir(tokFile), "admin.token", []byte(token))
	tg := startSwitchGateway(t, "admin:\n  token_file: "+tokFile+"\n")

	settings := configSettings(reflect.TypeFor[Config](), "", nil)
	if len(settings) < 100 {
		t.Fatalf("only %d settings found in Config; the walk is broken", len(settings))
	}
	var ignored []string
	for _, s := range settings {
		t.Run(s.key, func(t *testing.T) {
			next, err := LoadConfig(tg.gw.cfg.File())
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(reloadedSettings, s.key) {
				// Applied: reloadedChecks changes it and checks that it
				// took effect.
				check := reloadedChecks[s.key]
				if check == nil {
					t.Fatalf("%s is reloaded but reloadedChecks has no check of it", s.key)
				}
				check(t, tg, next)
				return
			}
			if !changeValue(settingValue(next, s.index)) {
				t.Fatalf("the test cannot change %s (%s): teach changeValue its type", s.key, settingValue(next, s.index).Type())
			}
			tg.logs.Reset()
			got := reloadConfig(t, tg.gw, next)
			named := namesSetting(got, s.key)
			logged := strings.Contains(tg.logs.String(), `"needs_restart"`) && strings.Contains(tg.logs.String(), `"`+firstNamed(got, s.key)+`"`)
			gauge := gaugeValue(t, tg.gw.metrics.restartPending) > 0
			var d readyzDetail
			st, body, err := adminGetStatus(t, tg, "/readyz", token)
			if err == nil {
				err = json.Unmarshal([]byte(body), &d)
			}
			ready := err == nil && st == http.StatusOK && d.Config != nil && namesSetting(d.Config.NeedsRestart, s.key)
			if !named || !logged || !gauge || !ready {
				ignored = append(ignored, s.key)
				t.Errorf("%s changed on reload: named %v (%v), warning %v, credgate_config_restart_pending %v, /readyz %v; want it applied or named everywhere", s.key, named, got, logged, gauge, ready)
			}
		})
	}
	t.Logf("%d settings, %d silently ignored on reload: %v", len(settings), len(ignored), ignored)
	// Back to the running file: nothing pending.
	running, err := LoadConfig(tg.gw.cfg.File())
	if err != nil {
		t.Fatal(err)
	}
	if got := reloadConfig(t, tg.gw, running); len(got) != 0 {
		t.Errorf("the running file re-read: %v wait for a restart, want none", got)
	}
}

// reloadedChecks change each key of reloadedSettings in next, reload it
// into tg and check that the running gateway took it. Its behaviour is
// tested at length elsewhere (named in the comment).
var reloadedChecks = map[string]func(t *testing.T, tg *testGateway, next *Config){
	// TestReloadUpstreamCABundle.
	"upstream.ca_bundle": func(t *testing.T, tg *testGateway, next *Config) {
		next.Upstream.CABundle = writeFile(t, tg.dir, "other-ca.pem", append(newTestPKI(t, "x.test").caPEM, tg.pki.caPEM...))
		if got := reloadConfig(t, tg.gw, next); namesSetting(got, "upstream.ca_bundle") {
			t.Errorf("upstream.ca_bundle applied yet named as waiting for a restart: %v", got)
		}
		if got := tg.gw.pools.Load().trust.bundle; got != next.Upstream.CABundle {
			t.Errorf("upstream trust in force is read from %q, want %q", got, next.Upstream.CABundle)
		}
	},
}

// TestReloadEveryConfigFile: the same class for the content of the files
// the config names (namedFiles: keys, certificates, CA bundles, tokens,
// header values), rewritten in place with the config unchanged — as
// cert-manager, Vault Agent or a Kubernetes Secret volume do. Each file
// the gateway reads again while it runs (reloadedFiles; each has its own
// test) is left alone; every other one, read at start only, is named by
// its key as waiting for a restart in the warning, the gauge and
// /readyz's detail, and no longer once its content is back.
func TestReloadEveryConfigFile(t *testing.T) {
	const token = "reload-token-0123456789abcdef"
	tokFile := filepath.Join(t.TempDir(), "admin.token")
	writeFile(t, filepath.Dir(tokFile), "admin.token", []byte(token))
	tg := startSwitchGateway(t, "admin:\n  token_file: "+tokFile+"\n")

	// A config that names every file namedFiles knows; not a valid one
	// (nothing is started from it), only the names matter.
	dir := t.TempDir()
	every := everyFileConfig(t, func(name string) string { return writeFile(t, dir, name, []byte("start content of "+name+"\n")) })
	files := every.namedFiles()
	if len(files) < 20 {
		t.Fatalf("only %d files named; the config above misses some", len(files))
	}
	tg.gw.startFiles = startOnlyFiles(every)
	running, err := LoadConfig(tg.gw.cfg.File())
	if err != nil {
		t.Fatal(err)
	}
	var ignored []string
	startOnly := 0
	for _, nf := range files {
		key := keyPath(nf.keys...)
		t.Run(key, func(t *testing.T) {
			orig := mustRead(t, nf.path)
			writeFile(t, filepath.Dir(nf.path), filepath.Base(nf.path), []byte("new content\n"))
			tg.logs.Reset()
			got := reloadConfig(t, tg.gw, running)
			if slices.Contains(reloadedFiles, settingName(nf.keys)) {
				if len(got) != 0 {
					t.Errorf("%s is re-read by the running gateway, yet named as waiting for a restart: %v", key, got)
				}
			} else {
				startOnly++
				want := []string{key}
				logged := strings.Contains(tg.logs.String(), `"needs_restart":["`+key+`"]`)
				gauge := gaugeValue(t, tg.gw.metrics.restartPending) == 1
				var d readyzDetail
				st, body, err := adminGetStatus(t, tg, "/readyz", token)
				if err == nil {
					err = json.Unmarshal([]byte(body), &d)
				}
				ready := err == nil && st == http.StatusOK && d.Config != nil && slices.Equal(d.Config.NeedsRestart, want)
				if !slices.Equal(got, want) || !logged || !gauge || !ready {
					ignored = append(ignored, key)
					t.Errorf("%s's content changed, read at start only: named %v, warning %v, gauge %v, /readyz %v; want %v named everywhere", key, got, logged, gauge, ready, want)
				}
			}
			writeFile(t, filepath.Dir(nf.path), filepath.Base(nf.path), orig)
			if got := reloadConfig(t, tg.gw, running); len(got) != 0 {
				t.Errorf("%s's content back as it was: %v still wait for a restart", key, got)
			}
		})
	}
	t.Logf("%d files named, %d read at start only, %d silently ignored on reload: %v", len(files), startOnly, len(ignored), ignored)
}

// firstNamed is the key in keys that names key (itself or its block).
func firstNamed(keys []string, key string) string {
	for _, k := range keys {
		if k == key || strings.HasPrefix(key, k+".") {
			return k
		}
	}
	return key
}

// reloadConfig is g.ReloadConfig(next), which must apply what it applies
// without an error; it returns the keys waiting for a restart.
func reloadConfig(t *testing.T, g *Gateway, next *Config) []string {
	t.Helper()
	keys, err := g.ReloadConfig(next)
	if err != nil {
		t.Errorf("ReloadConfig: %v", err)
	}
	return keys
}

// everyFileConfig is a config that names every file namedFiles knows,
// each path made by f from a short name; not a valid config (nothing is
// started from it), only the names matter.
func everyFileConfig(t *testing.T, f func(name string) string) *Config {
	t.Helper()
	var every Config
	if err := yaml.Unmarshal(fmt.Appendf(nil, `
policy: %s
ca: {cert: %s, key: %s}
tls: {cert: %s, key: %s, client_ca: %s}
upstream: {ca_bundle: %s}
cache:
  redis:
    addrs: [127.0.0.1:1]
    password_file: %s
    tls: {ca: %s, cert: %s, key: %s}
    encryption_keys: [{file: %s}]
admin:
  token_file: %s
  tls: {cert: %s, key: %s, client_ca: %s}
audit:
  checkpoint: {key_file: %s}
  fingerprint_key_file: %s
  otlp: {endpoint: "127.0.0.1:1", ca: %s, headers: {x-key: {file: %s}}}
identity:
  mtls: {bundles: [{trust_domain: example.org, file: %s}]}
  jwt: {issuers: [{issuer: "https://issuer.test", jwks_file: %s}]}
  posture: {file: %s}
run_tokens: {key_file: %s}
tracing: {enabled: true, endpoint: "127.0.0.1:1", ca: %s, headers: {x-key: {file: %s}}}
`, f("policy"), f("ca.cert"), f("ca.key"), f("tls.cert"), f("tls.key"), f("tls.client_ca"), f("ca_bundle"),
		f("redis.password"), f("redis.ca"), f("redis.cert"), f("redis.key"), f("redis.enc"),
		f("admin.token"), f("admin.cert"), f("admin.key"), f("admin.client_ca"),
		f("checkpoint.key"), f("fp.key"), f("audit-otlp.ca"), f("audit-otlp.header"),
		f("bundle.pem"), f("jwks.json"), f("posture.json"), f("runtoken.key"), f("tracing.ca"), f("tracing.header")), &every); err != nil {
		t.Fatal(err)
	}
	return &every
}
