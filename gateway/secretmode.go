package gateway

import (
	"fmt"
	"log/slog"
	"regexp"
	"strconv"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/cfgfile"
)

// secretSettings classifies every file setting namedFiles lists: true
// for a file that holds a secret (a private key, a token, a password, a
// sealing key), whose mode Config.SecretModeWarnings judges; false for a
// certificate, a CA bundle, a key set or a policy, which anyone may read.
// A list index is written "[]", a header name "*". A setting namedFiles
// lists that is not here is judged as a secret, and
// TestSecretSettingsClassified fails on it.
var secretSettings = map[string]bool{
	"policy":                             false,
	"ca.cert":                            false,
	"ca.key":                             true,
	"tls.cert":                           false,
	"tls.key":                            true,
	"tls.client_ca":                      false,
	"upstream.ca_bundle":                 false,
	"cache.redis.password_file":          true,
	"cache.redis.tls.ca":                 false,
	"cache.redis.tls.cert":               false,
	"cache.redis.tls.key":                true,
	"cache.redis.encryption_keys[].file": true,
	"admin.token_file":                   true,
	"admin.tls.cert":                     false,
	"admin.tls.key":                      true,
	"admin.tls.client_ca":                false,
	"audit.checkpoint.key_file":          true,
	"audit.fingerprint_key_file":         true,
	"audit.otlp.ca":                      false,
	"audit.otlp.headers.*.file":          true,
	"tracing.ca":                         false,
	"tracing.headers.*.file":             true,
	"identity.mtls.bundles[].file":       false,
	"identity.jwt.issuers[].jwks_file":   false,
	"identity.posture.file":              false,
	"run_tokens.key_file":                true,
}

// tokenSettings are the token files of the identity config: the bearer
// tokens identity sends when it fetches a key set or a posture feed, and
// the kubernetes factor's own token for TokenReview. Their mode is judged
// as a service-account token's (cfgfile.CheckTokenMode: group or others
// may write it, or a foreign user owns it; readable by others is fine):
// they are usually the pod's service-account token, which Kubernetes
// mounts 0644, short-lived and bound to an audience. They are not in
// namedFiles, which lists the files that must exist at start and whose
// change waits for a restart: these are read at each fetch (a missing one
// fails that fetch, reported then), so validate does not require them and
// a change to one needs no restart. TestSecretSettingsClassified fails on
// a file setting of the config that is in neither map.
var tokenSettings = map[string]bool{
	"identity.jwt.issuers[].bearer_token_file": true,
	"identity.kubernetes.token_file":           true,
	"identity.posture.bearer_token_file":       true,
}

// tokenFiles lists the token files the identity config names
// (tokenSettings): the kubernetes factor's token_file at its default when
// unset, as identity reads it there.
func (c *Config) tokenFiles() []namedFile {
	var files []namedFile
	for i, is := range c.Identity.JWT.Issuers {
		if is.BearerTokenFile != "" {
			files = append(files, namedFile{[]string{"identity", "jwt", "issuers", strconv.Itoa(i), "bearer_token_file"}, is.BearerTokenFile, "the bearer token sent with the issuer's key set fetches"})
		}
	}
	if k := c.Identity.Kubernetes; k != nil {
		f := k.TokenFile
		if f == "" {
			f = identity.DefaultKubernetesTokenFile
		}
		files = append(files, namedFile{[]string{"identity", "kubernetes", "token_file"}, f, "the gateway's service-account token, sent with each TokenReview"})
	}
	if p := c.Identity.Posture; p != nil && p.BearerTokenFile != "" {
		files = append(files, namedFile{[]string{"identity", "posture", "bearer_token_file"}, p.BearerTokenFile, "the bearer token sent with the posture feed's fetches"})
	}
	return files
}

// indexRE matches a list index as keyPath writes it.
var indexRE = regexp.MustCompile(`\[[0-9]+\]`)

// settingClass is keys written as secretSettings' keys are: indices as
// "[]", the name under "headers" as "*".
func settingClass(keys []string) string {
	norm := make([]string, len(keys))
	copy(norm, keys)
	for i := range norm {
		if i > 0 && norm[i-1] == "headers" {
			norm[i] = "*"
		}
	}
	return indexRE.ReplaceAllString(keyPath(norm...), "[]")
}

// looseSecret is a secret file of the config whose mode is loose.
type looseSecret struct {
	key       string // the setting, "admin.token_file"
	line, col int
	mode      *cfgfile.LooseMode
}

// looseSecrets judges every secret file the config names (secretSettings)
// with cfgfile.CheckSecretMode, and identity's token files (tokenSettings)
// with cfgfile.CheckTokenMode. A file that cannot be looked at is left
// out: CheckFiles reports a missing secret file, identity a missing token
// at its fetch.
func (c *Config) looseSecrets() []looseSecret {
	var out []looseSecret
	seen := map[string]bool{}
	judge := func(f namedFile, check func(string) (*cfgfile.LooseMode, error)) {
		key := keyPath(f.keys...)
		if f.path == "" || seen[key] {
			return
		}
		seen[key] = true
		lm, err := check(f.path)
		if err != nil || lm == nil {
			return
		}
		l, col := valuePosition(c.root, f.keys...)
		out = append(out, looseSecret{key: key, line: l, col: col, mode: lm})
	}
	for _, f := range c.namedFiles() {
		// A setting not classified yet is judged: a false warning on a
		// certificate is the safer mistake (and the test fails on it).
		if secret, known := secretSettings[settingClass(f.keys)]; !known || secret {
			judge(f, cfgfile.CheckSecretMode)
		}
	}
	for _, f := range c.tokenFiles() {
		judge(f, cfgfile.CheckTokenMode)
	}
	return out
}

// SecretModeWarnings returns one warning per secret file the config
// names (secretSettings) whose mode lets others read it, or the group or
// others write it, or whose owner is neither root nor the gateway's user
// (cfgfile.CheckSecretMode), and per token file of identity
// (tokenSettings) the group or others may write or a foreign user owns
// (cfgfile.CheckTokenMode), at the key that names it. They do not fail
// validation or start: a Kubernetes Secret volume is 0644 unless its
// defaultMode says otherwise, and refusing it would stop a working
// gateway. The words name the setting, the file, its mode and the fix,
// never the content.
func (c *Config) SecretModeWarnings() []*ConfigError {
	var out []*ConfigError
	for _, ls := range c.looseSecrets() {
		out = append(out, &ConfigError{File: c.file, Line: ls.line, Col: ls.col, Msg: ls.key + ": " + ls.mode.String()})
	}
	return out
}

// warnSecretModes logs cfg's loose secret files, one line per file, and
// counts them in credgate_secret_files_loose_mode (with the policy's
// credential files, which the policy store judges at each policy load:
// countPolicySecretModes). New calls it at start and ReloadConfig at each
// re-read of the config: the secrets themselves are read far more often
// (the admin token at each admin request that presents one), never with
// a warning.
func (g *Gateway) warnSecretModes(cfg *Config) {
	ls := cfg.looseSecrets()
	g.metrics.secretLooseConfig.Store(int64(len(ls)))
	for _, l := range ls {
		g.log.Warn("secret file readable or writable by others than the gateway's user; it is used anyway",
			slog.String("setting", l.key), slog.String("file", l.mode.Path),
			slog.String("mode", fmt.Sprintf("%04o", uint32(l.mode.Mode))), slog.String("detail", l.mode.String()))
	}
}

// countPolicySecretModes counts the policy in force's credential files of
// loose mode in credgate_secret_files_loose_mode, as the store judged (and
// logged) them when it loaded the policy (policy.Store.LooseSecretFiles).
// New calls it once the store has its first policy, onReload after each
// reload that put one in force.
func (g *Gateway) countPolicySecretModes() {
	g.metrics.secretLoosePolicy.Store(int64(g.store.LooseSecretFiles()))
}
