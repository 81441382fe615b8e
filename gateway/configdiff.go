package gateway

import (
	"crypto/sha256"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/credgate/credgate/internal/cfgfile"
)

// ConfigChanges names the settings whose values differ between a and b,
// as the dotted keys of the config file (limits.max_connections,
// admin.tls.cert), in the order of the Config struct. It descends into
// blocks (structs, and pointers to structs both set); a list, a map or a
// block set in one and not the other is named as a whole.
func ConfigChanges(a, b *Config) []string {
	var changed []string
	diffValues(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), "", &changed)
	return changed
}

// yamlKey is the key yaml.v3 decodes struct field f from: its tag's name,
// or its Go name in lower case; inline when the tag says so. ok is false
// for a field yaml.v3 skips (unexported, or tagged "-").
func yamlKey(f reflect.StructField) (name string, inline, ok bool) {
	if !f.IsExported() {
		return "", false, false
	}
	name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return "", false, false
	}
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name, slices.Contains(strings.Split(opts, ","), "inline"), true
}

// diffValues appends to changed the keys under prefix whose values differ
// between the structs a and b.
func diffValues(a, b reflect.Value, prefix string, changed *[]string) {
	t := a.Type()
	n := len(*changed)
	for i := range t.NumField() {
		f := t.Field(i)
		name, inline, ok := yamlKey(f)
		if !ok {
			continue
		}
		key := prefix + name
		if inline {
			key = strings.TrimSuffix(prefix, ".")
		}
		fa, fb := a.Field(i), b.Field(i)
		if reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			continue
		}
		if fa.Kind() == reflect.Pointer && !fa.IsNil() && !fb.IsNil() && fa.Elem().Kind() == reflect.Struct {
			fa, fb = fa.Elem(), fb.Elem()
		}
		if fa.Kind() == reflect.Struct {
			sub := prefix
			if !inline {
				sub = key + "."
			}
			before := len(*changed)
			diffValues(fa, fb, sub, changed)
			if len(*changed) > before {
				continue
			}
		}
		// A list, a map, a value, or a block that differs only in what
		// it keeps unexported: the key as a whole.
		if key != "" {
			*changed = append(*changed, key)
		}
	}
	if len(*changed) == n && prefix != "" && !reflect.DeepEqual(a.Interface(), b.Interface()) {
		*changed = append(*changed, strings.TrimSuffix(prefix, "."))
	}
}

// reloadedSettings are the keys of the gateway config that a config
// reload (ReloadConfig, on SIGHUP) applies to the running gateway. Every
// other key is read at start only (the policy, and the CA and TLS files
// on their reload_interval, reload on their own).
var reloadedSettings = []string{"upstream.ca_bundle"}

// reloadedFiles are the settings naming a file (list indexes left out)
// whose file the running gateway reads again when it changes: on its
// own (the policy; the CA, TLS and admin TLS files every reload_interval;
// the admin token at each request; identity's bundles, key sets and
// posture feed) or on a config reload (upstream.ca_bundle). The content
// of every other file the config names is read at start only.
var reloadedFiles = []string{
	"policy", "ca.cert", "ca.key", "tls.cert", "tls.key", "tls.client_ca", "upstream.ca_bundle",
	"admin.token_file", "admin.tls.cert", "admin.tls.key", "admin.tls.client_ca",
	"identity.mtls.bundles.file", "identity.jwt.issuers.jwks_file", "identity.posture.file",
}

// startFile is a file the config names that the gateway reads at start
// only, with the SHA-256 of its content then (never shown: the file may
// hold a secret).
type startFile struct {
	key, path string
	sum       [32]byte
}

// maxDigestFile bounds what is read of a file to digest it; the files
// the config names are small (keys, certificates, tokens).
const maxDigestFile = 4 << 20

// startOnlyFiles lists the files cfg names whose content the gateway
// reads at start only, with their digests now.
func startOnlyFiles(cfg *Config) []startFile {
	var out []startFile
	for _, f := range cfg.namedFiles() {
		if f.path == "" || slices.Contains(reloadedFiles, settingName(f.keys)) {
			continue
		}
		out = append(out, startFile{key: keyPath(f.keys...), path: f.path, sum: fileDigest(f.path)})
	}
	return out
}

// settingName is a setting's keys without list indexes and map keys a
// user chose ("identity.mtls.bundles.file").
func settingName(keys []string) string {
	var b strings.Builder
	for _, k := range keys {
		if _, err := strconv.Atoi(k); err == nil {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(k)
	}
	return b.String()
}

// fileDigest is the SHA-256 of path's content: zero when it cannot be
// read, is not a regular file (a named pipe's read would wait), or is
// larger than maxDigestFile.
func fileDigest(path string) [32]byte {
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() || st.Size() > maxDigestFile {
		return [32]byte{}
	}
	// cfgfile.Read checks the file it opened, not the path: one swapped
	// for a named pipe after the Stat is refused too, never waited on.
	b, err := cfgfile.Read(path)
	if err != nil || len(b) > maxDigestFile {
		return [32]byte{}
	}
	return sha256.Sum256(b)
}

// changedStartFiles names, by key, the files read at start only whose
// content differs now from what the gateway read; keys already in
// named (the setting itself changed) are left out.
func changedStartFiles(files []startFile, named []string) []string {
	var out []string
	for _, f := range files {
		if fileDigest(f.path) == f.sum || slices.ContainsFunc(named, func(k string) bool {
			return k == f.key || strings.HasPrefix(f.key, k+".") || strings.HasPrefix(f.key, k+"[")
		}) {
			continue
		}
		out = append(out, f.key)
	}
	return out
}

// configState is what the last ReloadConfig found: the settings that
// wait for a restart, and why a setting it would apply was not.
type configState struct {
	needsRestart []string
	err          string
}

// ReloadConfig applies next, the gateway config file as re-read (on
// SIGHUP), to the running gateway. upstream.ca_bundle — a new path, or
// new content at the same path — is applied at once
// (reloadUpstreamTrust); a bundle that does not load is refused with an
// error naming the file and the block, the last good one stays in force,
// and the error is logged, returned, counted in
// credgate_config_reloads_total{result="error"} and shown in /readyz's
// detail (config.error) until a reload succeeds. Every other changed
// setting waits for a restart, and so does a file the config names whose
// content changed if the gateway reads it at start only (startOnlyFiles:
// cache.redis.tls.ca, audit.checkpoint.key_file...): each is named by its
// key in one warning, and the list is exposed until a restart or until
// the files match what runs again, as credgate_config_restart_pending and
// in /readyz's detail (config.needs_restart). It returns the keys that
// wait for a restart.
func (g *Gateway) ReloadConfig(next *Config) ([]string, error) {
	var applyErr error
	if _, err := g.reloadUpstreamTrust(next.Upstream.CABundle); err != nil {
		applyErr = err
		g.log.Error("gateway config reload: upstream.ca_bundle not applied; the last good bundle stays in force for upstream TLS (fix the file and send SIGHUP again)",
			slog.String("config", next.File()), slog.String("error", oneLineErr(err)))
	}
	// The running config, with what this and earlier reloads applied.
	running := *g.cfg
	running.Upstream.CABundle = g.pools.Load().trust.bundle
	changed := ConfigChanges(&running, next)
	changed = slices.DeleteFunc(changed, func(k string) bool { return slices.Contains(reloadedSettings, k) })
	// A file read at start only whose content changed waits for a
	// restart as a changed setting does.
	changed = append(changed, changedStartFiles(g.startFiles, changed)...)
	st := &configState{needsRestart: changed}
	if applyErr != nil {
		st.err = oneLineErr(applyErr)
	}
	prev := g.configState.Swap(st)
	g.metrics.restartPending.Set(float64(len(changed)))
	result := "ok"
	if applyErr != nil {
		result = "error"
	}
	g.metrics.configReloads.WithLabelValues(result).Inc()
	g.warnSecretModes(next)
	switch {
	case len(changed) > 0:
		g.log.Warn("gateway config settings changed that only a restart applies; the running values stay in force until credgate serve is restarted",
			slog.String("config", next.File()), slog.Any("needs_restart", changed))
	case prev != nil && len(prev.needsRestart) > 0:
		g.log.Info("the gateway config file matches the running config again; no restart is pending",
			slog.String("config", next.File()))
	}
	return slices.Clone(changed), applyErr
}

// ConfigReloadFailed records that the gateway config file, re-read (on
// SIGHUP), did not load: err (which the caller logs) is counted in
// credgate_config_reloads_total{result="error"} and shown in /readyz's
// detail (config.error) until a reload succeeds; the running config, and
// what waits for a restart, stay as they were.
func (g *Gateway) ConfigReloadFailed(err error) {
	st := &configState{err: oneLineErr(err)}
	if prev := g.configState.Load(); prev != nil {
		st.needsRestart = prev.needsRestart
	}
	g.configState.Store(st)
	g.metrics.configReloads.WithLabelValues("error").Inc()
}

// oneLineErr is err's message on one line (a bundle's error may quote
// several).
func oneLineErr(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// reloadUpstreamTrust makes bundle (upstream.ca_bundle, "" for none) the
// trust of upstream TLS if it differs, in path or content, from the
// generation in force: a new generation of upstream pools is built on it
// and swapped in as one, so the next request is verified under it, and
// the old generation is retired (upstreamPools.retireTo): requests in
// flight finish on its connections, none of them is reused, and it
// closes as they end. A bundle that does not load changes nothing. It
// reports whether the trust changed.
func (g *Gateway) reloadUpstreamTrust(bundle string) (bool, error) {
	g.trustMu.Lock()
	defer g.trustMu.Unlock()
	tr, err := loadUpstreamTrust(bundle)
	if err != nil {
		return false, err
	}
	cur := g.pools.Load()
	if tr.bundle == cur.trust.bundle && tr.digest == cur.trust.digest {
		return false, nil
	}
	next := g.newUpstreamGeneration(tr)
	g.pools.Store(next)
	cur.retireTo(next)
	g.log.Info("upstream.ca_bundle reloaded: new upstream connections verify against it; connections verified under the previous trust are not reused",
		slog.String("ca_bundle", bundle))
	return true, nil
}

// pendingRestart is what ReloadConfig found last: the changed settings
// that wait for a restart (none: nil).
func (g *Gateway) pendingRestart() []string {
	if p := g.configState.Load(); p != nil && len(p.needsRestart) > 0 {
		return p.needsRestart
	}
	return nil
}

// reloadError is the error of the last ReloadConfig ("" for none).
func (g *Gateway) reloadError() string {
	if p := g.configState.Load(); p != nil {
		return p.err
	}
	return ""
}
