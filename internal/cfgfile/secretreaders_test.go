package cfgfile

import (
	"regexp"
	"strings"
	"testing"
)

// secretReaders matches a call that reads a secret file: this package's
// ReadSecret and ReadSecretContext, and the wrappers the gateway and the
// providers read their secrets through.
var secretReaders = regexp.MustCompile(`\b(cfgfile\.ReadSecret(Context)?|providers\.(ReadFile|CheckFile|CheckSecretFile|CheckTokenFile)|readSecret)\(`)

// secretModeClasses classifies each call secretReaders finds in the
// module's non-test code ("FILE: CALL", as uncheckedReads): whether the
// mode of the file it reads is judged (cfgfile.CheckSecretMode, through
// gateway.Config.SecretModeWarnings for the gateway config's files, or
// providers.CheckSecretFile/CheckTokenFile through Policy.CheckSources for
// the policy's credential files: credgate validate warns, serve logs at
// start and on a config or policy reload and counts it in
// credgate_secret_files_loose_mode), and where; or why not. A new reader
// of a secret is not here, and TestSecretReadersClassified fails on it:
// add its setting to gateway's secretSettings (when the gateway config
// names the file; tokenSettings for a service-account token), check it with providers.CheckSecretFile in its
// provider's CheckSources (when the policy names it), or say here why its
// mode is not judged.
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

	// Identity's tokens, usually a Kubernetes service-account token (the
	// automounted one is 0644 by Kubernetes' own defaultMode, short-lived
	// and audience-bound): judged as a token (cfgfile.CheckTokenMode,
	// write and owner only) through gateway's tokenSettings, at start and
	// at each config re-read, never at each fetch.
	"identity/jwks.go: cfgfile.ReadSecretContext(ctx, bearerFile)":             "judged as a token (write, owner): identity.jwt.issuers[].bearer_token_file, identity.posture.bearer_token_file",
	"identity/tokenreview.go: cfgfile.ReadSecretContext(ctx, v.cfg.TokenFile)": "judged as a token (write, owner): identity.kubernetes.token_file",

	// The policy's credentials: each provider's CheckSources judges its
	// files (providers.CheckSecretFile, or CheckTokenFile for a
	// service-account token) by the rule above, once per policy load:
	// Policy.CheckSources' warnings, which credgate validate prints, the
	// policy store logs and counts (credgate_secret_files_loose_mode) when
	// it loads a policy; never per fetch. The fetch-time reads are of the
	// same files (providers/all TestEveryCredentialFileModeJudged holds
	// every file setting to its class).
	"providers/static/static.go: providers.CheckSecretFile(\"static\", prefix+\"file\", s.File, \"the credential\")":                                   "judged: static file, fields.*.file",
	"providers/static/static.go: cfgfile.ReadSecretContext(ctx, s.File)":                                                                               "judged at policy load (CheckSecretFile): static file, fields.*.file",
	"providers/google/google.go: providers.CheckSecretFile(\"google\", \"key.file\", p.Key.File, \"the service account's JSON key\")":                  "judged: google key.file",
	"providers/google/google.go: providers.ReadFile(ctx, \"google: key.file\", \"the key\", p.Key.File)":                                               "judged at policy load (CheckSecretFile): google key.file",
	"providers/vault/server.go: providers.CheckSecretFile(\"vault\", prefix+\"auth.token_file\", a.TokenFile, \"a Vault token\")":                      "judged: vault auth.token_file (method token)",
	"providers/vault/server.go: providers.CheckSecretFile(\"vault\", prefix+\"auth.role_id_file\", a.RoleIDFile, \"the AppRole role_id\")":             "judged: vault auth.role_id_file",
	"providers/vault/server.go: providers.CheckSecretFile(\"vault\", prefix+\"auth.secret_id_file\", a.SecretIDFile, \"the AppRole secret_id\")":       "judged: vault auth.secret_id_file",
	"providers/vault/login.go: cfgfile.ReadSecretContext(ctx, path)":                                                                                   "judged at policy load (CheckSecretFile, CheckTokenFile): vault auth.token_file, role_id_file, secret_id_file",
	"providers/jwtsign/jwtsign.go: providers.CheckSecretFile(module, prefix+\"file\", k.File, \"the PEM private key\")":                                "judged: private_key.file of github-app, snowflake, salesforce, google, oauth2 client_key, azure",
	"providers/jwtsign/jwtsign.go: providers.ReadFile(ctx, setting+\".file\", \"the key\", k.File)":                                                    "judged at policy load (CheckSecretFile): the jwtsign key files",
	"providers/azure/azure.go: providers.CheckSecretFile(\"azure\", \"client_certificate.file\", c.File, \"the PEM certificate and its private key\")": "judged: azure client_certificate.file holding its key",
	"providers/azure/azure.go: providers.ReadFile(ctx, \"client_certificate.file\", \"the certificate\", c.File)":                                      "judged at policy load (CheckSecretFile) when it holds the key; a certificate alone is not a secret",
	"providers/azure/azure.go: providers.CheckFile(\"azure: client_certificate.file\", c.File, \"the PEM certificate\")":                               "not judged: a certificate alone (its key in client_certificate.private_key.file, judged there), which anyone may read",

	// Service-account tokens of the policy: judged for write and owner
	// only (cfgfile.CheckTokenMode): Kubernetes mounts a projected token
	// 0644 unless the pod runs as one user, it lives an hour at most and
	// is bound to an audience, so "readable by others" would warn in
	// every pod with no fix; whoever may write it chooses the identity
	// the gateway presents, so write and owner still count.
	"providers/awssts/awssts.go: providers.CheckTokenFile(\"awssts\", \"web_identity_token_file\", p.WebIdentityTokenFile, \"the web identity token\")":                       "judged as a token (write, owner): awssts web_identity_token_file",
	"providers/awssts/awssts.go: providers.ReadFile(ctx, \"awssts: web_identity_token_file\", \"the web identity token\", p.WebIdentityTokenFile)":                            "judged at policy load as a token (CheckTokenFile): awssts web_identity_token_file",
	"providers/google/google.go: providers.CheckTokenFile(\"google\", \"workload_identity.subject_token.file\", p.WorkloadIdentity.SubjectToken.File, \"the subject token\")": "judged as a token (write, owner): google workload_identity.subject_token.file",
	"providers/google/federation.go: providers.ReadFile(ctx, \"google: workload_identity.subject_token.file\", \"the token\", st.File)":                                       "judged at policy load as a token (CheckTokenFile): google workload_identity.subject_token.file",
	"providers/vault/server.go: providers.CheckTokenFile(\"vault\", prefix+\"auth.token_file\", a.TokenFile, \"the JWT presented at login\")":                                 "judged as a token (write, owner): vault auth.token_file (methods kubernetes, jwt)",
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
