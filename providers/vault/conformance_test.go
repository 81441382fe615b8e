package vault

import (
	"fmt"
	"testing"

	"github.com/credgate/credgate/providers/providertest"
)

// TestConformance runs the checks every provider passes against the
// in-repo Vault emulator (internal/vaulttest; the emulator rather than a
// real server, so that Issued can count what Vault served): settings
// errors at FILE:LINE:COL, the secret redacted in every printed form, one
// read for concurrent first requests, ctx honoured.
func TestConformance(t *testing.T) {
	e := newEnv(t, envOpts{emulatorOnly: true})
	mount := e.kv(t)
	e.putKV(t, mount, "stripe", map[string]any{"secret_key": "sk_live_conformance_value"})
	// ttl gives the KV secret an Expiry, for the expiry check.
	path := "path: " + mount + "/data/stripe\nfield: secret_key\nttl: 1m\n"
	stalled := func(url string) string {
		return "server: {address: " + url + ", retries: 0, timeout: 30s, auth: " + tokenAuth + "}\n" + path
	}
	providertest.CheckConformance(t, providertest.Conformance{
		Name:     "vault",
		Settings: e.serverYAML(tokenAuth) + path,
		Bad: []providertest.BadSettings{
			{Settings: e.serverYAML(tokenAuth), Want: "path is not set"},
			{Settings: e.serverYAML(tokenAuth) + "path: /v1/secret/data/x", Want: "leave out the /v1/ prefix"},
			{Settings: "server: {address: 'http://vault.internal:8200', auth: {method: token}}\npath: a/b", Want: "use https"},
		},
		Issued: func() int { return e.emu.Count("read kv") },
		Unauthorized: func(on bool) {
			if on {
				e.emu.Deny(mount)
			} else {
				e.emu.Allow(mount)
			}
		},
		Stalled: stalled,
	})
}

// TestPKIConformance runs the same checks for vault-pki: one certificate
// issued for concurrent first requests, its private key redacted.
func TestPKIConformance(t *testing.T) {
	e := newEnv(t, envOpts{emulatorOnly: true})
	mount := pkiEnv(t, e)
	issue := fmt.Sprintf("mount: %s\nrole: partner-client\ncommon_name: conformance.clients.example.com\nttl: 1h\n", mount)
	providertest.CheckConformance(t, providertest.Conformance{
		Name:     "vault-pki",
		Settings: e.serverYAML(tokenAuth) + issue,
		Bad: []providertest.BadSettings{
			{Settings: e.serverYAML(tokenAuth) + "mount: " + mount + "\ncommon_name: x", Want: "role is not set"},
			{Settings: e.serverYAML(tokenAuth) + "mount: " + mount + "\nrole: r\ncommon_name: x\nalt_names: ['a,b']", Want: "must not contain a comma"},
		},
		Issued: func() int { return e.emu.Count("issue") },
		Unauthorized: func(on bool) {
			if on {
				e.emu.Deny(mount)
			} else {
				e.emu.Allow(mount)
			}
		},
		Stalled: func(url string) string {
			return "server: {address: " + url + ", retries: 0, timeout: 30s, auth: " + tokenAuth + "}\n" + issue
		},
	})
}
