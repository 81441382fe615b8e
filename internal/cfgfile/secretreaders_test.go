package cfgfile

import (
	"regexp"
	"strings"
	"testing"
)

// secretReaders matches a call that reads a secret file: this package's
// ReadSecret and ReadSecretContext, and the wrappers the gateway and the
// providers read their secrets through.
var secretReaders = regexp.MustCompile(`\b(cfgfile\.ReadSecret(Context)?|providers\.(ReadFile|CheckFile)|readSecret)\(`)

// secretModeClasses classifies each call secretReaders finds in the
// module's non-test code ("FILE: CALL", as uncheckedReads): whether the
// mode of the file it reads is judged (cfgfile.CheckSecretMode, through
// gateway.Config.SecretModeWarnings: credgate validate warns, serve logs
// at start and on a config reload and counts it in
// credgate_secret_files_loose_mode), and where; or why not. A new reader
// of a secret is not here, and TestSecretReadersClassified fails on it:
// add its setting to gateway's secretSettings (when the gateway config
// names the file), or say here why its mode is not judged.
var secretModeClasses = map[string]string{
	"gateway/mitm/mitm.go: cfgfile.ReadSecret(keyPath)":               "judged: ca.key",
	"gateway/admin.go: readSecret(t.file, env)":                       "judged: admin.token_file",
	"gateway/redis.go: readSecret(k.File, k.Env)":                     "judged: cache.redis.encryption_keys[].file",
	"gateway/redis.go: readSecret(cfg.PasswordFile, cfg.PasswordEnv)": "judged: cache.redis.password_file",
	"gateway/redis.go: cfgfile.ReadSecret(cfg.TLS.Key)":               "judged: cache.redis.tls.key",
	"gateway/redis.go: cfgfile.ReadSecret(file)":                      "readSecret itself: its callers are classified",
	"gateway/audit.go: cfgfile.ReadSecret(path)":                      "judged: audit.fingerprint_key_file",
	"audit/sign.go: cfgfile.ReadSecret(path)":                         "judged: audit.checkpoint.key_file",
	"identity/runtoken/runtoken.go: cfgfile.ReadSecret(file)":         "judged: run_tokens.key_file",
	"internal/otlp/endpoint.go: cfgfile.ReadSecret(v.File)":           "judged: audit.otlp.headers.*.file, tracing.headers.*.file",
	"providers/sources.go: cfgfile.ReadSecretContext(ctx, path)":      "providers.ReadFile itself: its callers are classified",

	// A Kubernetes service-account token: the automounted one
	// (kube-api-access) is 0644 by Kubernetes' own defaultMode, short-lived
	// and audience-bound; a warning on it would fire in every pod and
	// could be silenced only by replacing the automount.
	"identity/jwks.go: cfgfile.ReadSecretContext(ctx, bearerFile)":             "not judged: identity.jwt.issuers[].bearer_token_file, usually the pod's service-account token (0644 as Kubernetes mounts it)",
	"identity/tokenreview.go: cfgfile.ReadSecretContext(ctx, v.cfg.TokenFile)": "not judged: the kubernetes factor's token_file, the pod's service-account token (0644 as Kubernetes mounts it)",

	// The policy's credentials: their files are checked by
	// Policy.SourceProblems (CheckSources), which has errors and no
	// warnings yet; not judged until it has.
	"providers/awssts/awssts.go: providers.ReadFile(ctx, \"awssts: web_identity_token_file\", \"the web identity token\", p.WebIdentityTokenFile)": "not judged yet: a policy credential's file (and a projected service-account token, 0644 as Kubernetes mounts it)",
	"providers/static/static.go: cfgfile.ReadSecretContext(ctx, s.File)":                                                                           "not judged yet: a policy credential's file",
	"providers/static/static.go: providers.CheckFile(\"static: \"+setting, s.File, \"the credential\")":                                            "not judged yet: a policy credential's file",
	"providers/google/google.go: providers.ReadFile(ctx, \"google: key.file\", \"the key\", p.Key.File)":                                           "not judged yet: a policy credential's file",
	"providers/google/google.go: providers.CheckFile(\"google: \"+setting, path, holds)":                                                           "not judged yet: a policy credential's file",
	"providers/google/federation.go: providers.ReadFile(ctx, \"google: workload_identity.subject_token.file\", \"the token\", st.File)":            "not judged yet: a policy credential's file",
	"providers/vault/server.go: providers.CheckFile(\"vault: \"+prefix+\"auth.\"+key, path, holds)":                                                "not judged yet: a policy credential's file",
	"providers/vault/login.go: cfgfile.ReadSecretContext(ctx, path)":                                                                               "not judged yet: a policy credential's file",
	"providers/jwtsign/jwtsign.go: providers.CheckFile(module+\": \"+prefix+\"file\", k.File, \"the PEM private key\")":                            "not judged yet: a policy credential's file",
	"providers/jwtsign/jwtsign.go: providers.ReadFile(ctx, setting+\".file\", \"the key\", k.File)":                                                "not judged yet: a policy credential's file",
	"providers/azure/azure.go: providers.ReadFile(ctx, \"client_certificate.file\", \"the certificate\", c.File)":                                  "not judged yet: a policy credential's file",
	"providers/azure/azure.go: providers.CheckFile(\"azure: client_certificate.file\", c.File, \"the PEM certificate\")":                           "not judged yet: a policy credential's file",
}

// TestSecretReadersClassified is the class "every secret file the gateway
// reads has its mode judged, or a reason why not": each call that reads a
// secret (secretReaders) is on secretModeClasses. Entries that match no
// call fail too.
func TestSecretReadersClassified(t *testing.T) {
	used := map[string]bool{}
	var calls int
	walkGo(t, func(rel string, lineNo int, line string) {
		if strings.HasPrefix(strings.TrimSpace(line), "func ") {
			return // a definition, not a call
		}
		for _, loc := range secretReaders.FindAllStringIndex(line, -1) {
			calls++
			key := rel + ": " + callText(line[loc[0]:])
			if _, ok := secretModeClasses[key]; ok {
				used[key] = true
				continue
			}
			t.Errorf("%s:%d: %s reads a secret file: if the gateway config names it, add its setting to gateway's secretSettings (true) so that Config.SecretModeWarnings judges its mode, and add %q to secretModeClasses as \"judged: SETTING\"; else add it with the reason its mode is not judged", rel, lineNo, key, key)
		}
	})
	if calls < 10 {
		t.Fatalf("only %d calls found: is the scan reading the module?", calls)
	}
	reportStale(t, "secretModeClasses", secretModeClasses, used)
}
