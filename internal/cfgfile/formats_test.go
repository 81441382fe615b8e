package cfgfile

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// redisKeys matches where a Redis key or channel name is built from the
// deployment's namespace: NS + ":suffix".
var redisKeys = regexp.MustCompile(`\b(?:Namespace|ns)\s*\+\s*"(:[a-z][^"]*)"`)

// fileWriters matches a call that writes a file the gateway (or a later
// run of it, or another replica) may read back.
var fileWriters = regexp.MustCompile(`\b(atomicfile\.Write|os\.WriteFile|os\.Create|os\.OpenFile)\(`)

// persistedFormats classifies every Redis key built from the namespace
// ("FILE: :SUFFIX") and every file write ("FILE: CALL") in the module's
// non-test code: the format is shared between replicas or kept across
// restarts, so during a rolling upgrade and after a rollback another
// version reads it. Each one either names the tests that hold what a
// reader of this version does with a record of a newer version, an older
// one and a truncated one ("tested: TestA, TestB", each of which must
// exist) and has its row in docs/scaling.md "Rolling upgrades and
// rollbacks", or says why no other version reads it ("not shared: ...").
// A new key or writer is not here, and TestPersistedFormatsClassified
// fails on it.
var persistedFormats = map[string]string{
	"providers/rediscache/rediscache.go: :cred:":        "tested: TestSealedEntryVersions, TestRollbackAndSplice",
	"providers/rediscache/rediscache.go: :lock:":        "tested: TestFetchSingleFlightAcrossReplicas (presence and the owner's token only)",
	"providers/rediscache/rediscache.go: :gen":          "tested: TestRollbackAndSplice (an integer counter; a reset only makes entries look old)",
	"providers/rediscache/rediscache.go: :events":       "hints, not state: a message of an unknown type or shape is ignored (Store.handle); the sealed entry in Redis decides",
	"killswitch/switch.go: :switches":                   "tested: TestRedisStateVersions, TestRedisStateNewerThenCurrent, TestRedisTamperingLiftsNothing",
	"killswitch/switch.go: :switches:events":            "hints, not state: each message makes the replica re-read the hash (TestRedisStateVersions); one is applied alone only when it verifies, is of a known operation and kind, and is the next generation",
	"identity/runtoken/runtoken.go: :runtoken:revoked:": "tested: TestRevocationValueShapes, TestRevocationSurvivesRedisLoss",
	"ratelimit/ratelimit.go: :rl:{":                     "not a security boundary: a bucket is a number; one that is not reads as full, another Redis type falls back to per-replica limits (docs/scaling.md); a new bucket format takes a new prefix",

	"killswitch/statefile.go: atomicfile.Write(path, append(b, '\\n'), 0o600)":           "tested: TestStateFileVersions, TestStateFileKeepsNewerFields",
	"audit/file.go: os.OpenFile(r.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, r.opts.Mode)": "tested: TestVerifyNewerLines",

	"gateway/mitm/mitm.go: os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)":                    "not shared: credgate ca init writes a PEM CA certificate and key, standard formats",
	"gateway/preflight.go: os.OpenFile(f.path, os.O_RDONLY|syscall.O_NONBLOCK, 0)":                        "not a write: opens a file to read it",
	"internal/cfgfile/cfgfile.go: os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)":                   "not a write: opens a file to read it",
	"cli/policycmd.go: os.Create(outPath)":                                                                "not read back: policy suggest writes a policy for a person to review",
	"cli/runenv.go: os.WriteFile(w.path, w.data, 0o600)":                                                  "not shared: credgate run's files for the child process, removed when it exits",
	"cmd/credgate/pgoprofile.go: os.Create(path)":                                                         "not read back by credgate: a CPU profile for the Go toolchain",
	"internal/demo/setup.go: os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)":                 "not shared: the demo's example files, written once",
	"internal/demo/origin.go: os.WriteFile(caFile, pki.caPEM, 0o644)":                                     "not shared: the demo's CA certificate (PEM)",
	"internal/demo/origin.go: os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)":                 "not shared: the demo's files, written once",
	"providers/providertest/conformance.go: os.WriteFile(path, []byte(b.String()), 0o600)":                "test support: a conformance report",
	"internal/fakekit/fakekit.go: os.WriteFile(p, CertPEM(srv), 0o600)":                                   "test support",
	"internal/redistest/redistest.go: os.WriteFile(conf, []byte(text), 0o600)":                            "test support: redis-server's configuration",
	"internal/miniotest/miniotest.go: os.WriteFile(filepath.Join(certs, name), b, 0o600)":                 "test support",
	"internal/testpki/testpki.go: os.WriteFile(certPath, a.CertPEM, 0o644)":                               "test support",
	"internal/testpki/testpki.go: os.WriteFile(keyPath, a.KeyPEM, 0o600)":                                 "test support",
	"internal/cfgfile/cfgfiletest/cfgfiletest_unix.go: os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0)": "test support",
	"internal/cfgfile/cfgfiletest/cfgfiletest_unix.go: os.Create(p)":                                      "test support",
}

// toolDirs hold programs that are not the gateway: what they write is
// their own run's, and no gateway reads it.
var toolDirs = []string{"bench/", "scripts/"}

// TestPersistedFormatsClassified is the class "every format one replica
// or run writes and another version may read back is known, and tested
// across versions": each Redis key built from the namespace and each file
// write in the module is on persistedFormats, whose tests exist. Entries
// that match nothing fail too.
func TestPersistedFormatsClassified(t *testing.T) {
	used := map[string]bool{}
	var found int
	check := func(rel string, lineNo int, key, what string) {
		found++
		if _, ok := persistedFormats[key]; ok {
			used[key] = true
			return
		}
		t.Errorf("%s:%d: %s: add %q to persistedFormats, with the tests that hold what this version does with a record of a newer version, an older one and a truncated one (and a row in docs/scaling.md \"Rolling upgrades and rollbacks\"), or why no other version reads it", rel, lineNo, what, key)
	}
	walkGo(t, func(rel string, lineNo int, line string) {
		for _, d := range toolDirs {
			if strings.HasPrefix(rel, d) {
				return
			}
		}
		for _, m := range redisKeys.FindAllStringSubmatch(line, -1) {
			check(rel, lineNo, rel+": "+m[1], "a Redis key or channel "+m[1])
		}
		if strings.HasPrefix(strings.TrimSpace(line), "func ") {
			return
		}
		for _, loc := range fileWriters.FindAllStringIndex(line, -1) {
			check(rel, lineNo, rel+": "+callText(line[loc[0]:]), "a file write")
		}
	})
	if found < 10 {
		t.Fatalf("only %d keys and writes found: is the scan reading the module?", found)
	}
	reportStale(t, "persistedFormats", persistedFormats, used)

	tests := testFuncs(t)
	for key, class := range persistedFormats {
		names, ok := strings.CutPrefix(class, "tested: ")
		if !ok {
			continue
		}
		names, _, _ = strings.Cut(names, " (")
		for _, n := range strings.Split(names, ", ") {
			n, _, _ = strings.Cut(n, " ")
			if !tests[n] {
				t.Errorf("persistedFormats[%q] names %s, which is no test of the module", key, n)
			}
		}
	}
}

// testFuncs returns the names of the module's Test functions.
func testFuncs(t *testing.T) map[string]bool {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	decl := regexp.MustCompile(`(?m)^func (Test\w+)\(`)
	names := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}
