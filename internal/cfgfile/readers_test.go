package cfgfile

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// fileOpeners matches a call that opens or reads a file by name. A path a
// user configures must be read through this package instead (Read,
// ReadSecret and their Context forms, or providers.ReadFile in a
// provider), which refuses a named pipe, a device and an oversized file.
var fileOpeners = regexp.MustCompile(`\b(os\.(ReadFile|Open|OpenFile|ReadDir)|ioutil\.(ReadFile|ReadDir)|tls\.LoadX509KeyPair|syscall\.Open)\(`)

// uncheckedReads are the calls fileOpeners finds in the module's non-test
// code that do not read a path a user configures for the gateway, each
// with the reason it may bypass this package. A key is "FILE: CALL" (the
// call as written, its arguments included) or a folder ending in "/" for
// every call below it. A new reader of a configured path is not here, and
// TestNoUncheckedFileReads fails on it.
var uncheckedReads = map[string]string{
	"internal/runrelay/peer_linux.go: os.Open(file)":                                                                                                "the kernel's /proc/net/tcp and tcp6 socket tables (fixed names, not configured), read to find the owner and inode of a loopback client's socket",
	`internal/runrelay/peer_linux.go: os.Open("/proc")`:                                                                                             "the process list (a fixed name, not configured), read (bounded) to find the command's descendants",
	`internal/runrelay/peer_linux.go: os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")`:                                                          "a process's kernel status line (a fixed name under /proc, not configured; a few hundred bytes), read for its parent",
	"internal/runrelay/peer_linux.go: os.Open(dir)":                                                                                                 "a descendant's /proc/PID/fd directory (not configured), listed (bounded) and each entry's link read (os.Readlink) to find which process holds a client's socket",
	"internal/cfgfile/cfgfile.go: os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)":                                                             "the one checked open: O_NONBLOCK, then the Stat that refuses what is not a regular file",
	"gateway/preflight.go: os.OpenFile(f.path, os.O_RDONLY|syscall.O_NONBLOCK, 0)":                                                                  "CheckFiles' fileProblem: opens without blocking only to Stat the file, reads nothing",
	"gateway/mitm/mitm.go: os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)":                                                              "writes a new CA file (credgate ca init); O_EXCL refuses an existing path",
	"internal/demo/setup.go: os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)":                                                           "writes the demo's own files, O_EXCL",
	"internal/demo/origin.go: os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)":                                                           "writes the demo origin's CA, O_EXCL",
	"audit/file.go: os.OpenFile(r.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, r.opts.Mode)":                                                            "the audit log the gateway appends to (a write, not a read of a configured file)",
	"audit/verify.go: os.Open(name)":                                                                                                                "credgate audit verify streams audit logs named on its command line, of any size, line by line",
	"internal/atomicfile/atomicfile.go: os.Open(dir)":                                                                                               "opens the directory of a file it just wrote, to fsync it",
	"internal/freeport/freeport.go: os.ReadFile(\"/proc/sys/net/ipv4/ip_local_port_range\")":                                                        "a fixed /proc file, for tests' port allocation",
	"internal/freeport/claim_unix.go: syscall.Open(filepath.Join(dir, strconv.Itoa(p)), syscall.O_RDONLY|syscall.O_CREAT|syscall.O_CLOEXEC, 0o666)": "a lock file the port allocator creates itself in its own directory",
	"cli/demo.go: os.ReadFile(env.CredentialFile)":                                                                                                  "the credential file credgate demo wrote itself a moment before",
	"cli/demo.go: os.ReadFile(caFile)":                                                                                                              "the CA credgate demo wrote itself",
	"cli/admin.go: os.ReadFile(ac.caCert)":                                                                                                          "credgate admin --cacert: typed on the command line for one short-lived command (process substitution, a pipe, is a fair use; ^C ends a hang)",
	"cli/admin.go: tls.LoadX509KeyPair(ac.cert, ac.key)":                                                                                            "credgate admin --cert/--key: command-line flags of a short-lived command",
	"cli/admin.go: os.ReadFile(ac.tokenFile)":                                                                                                       "credgate admin --token-file: a command-line flag; --token-file <(vault read ...) is a pipe on purpose",
	"cli/explain.go: os.ReadFile(certFile)":                                                                                                         "credgate explain --cert: a command-line flag of a short-lived command",
	"cli/explain.go: os.ReadFile(tokenFile)":                                                                                                        "credgate explain --token-file: a command-line flag; <(kubectl create token ...) is a pipe on purpose",
	"cli/explain.go: os.Open(name)":                                                                                                                 "credgate explain --data/--data-binary @FILE: a command-line flag of a short-lived command, as curl reads it (@- and pipes on purpose); read through a LimitReader of batch.MaxBody+1",
	"cli/policycmd.go: os.ReadFile(basePath)":                                                                                                       "credgate policy suggest --policy: a command-line flag of a short-lived command",
	"cli/audit.go: os.ReadFile(f)":                                                                                                                  "credgate audit verify --pubkey: a command-line flag of a short-lived command",
	"providers/providertest/conformance.go: os.ReadFile(path)":                                                                                      "a test helper reading the policy its test wrote",
	"internal/cfgfile/cfgfiletest/cfgfiletest_unix.go: os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0)":                                           "a test helper opening its own named pipe to write, so a reader blocked on it returns",
	"internal/testpki/":         "a test helper reading the PEM files its test wrote",
	"bench/cmd/credgate-bench/": "the benchmark harness: reads /proc and the files it wrote itself; not part of the gateway",
	"scripts/":                  "build scripts run by the maintainers, on files of the repository",
}

// TestNoUncheckedFileReads is the class "a file the configuration names
// is read through cfgfile": every call that opens or reads a file by name
// in the module's non-test code is either on uncheckedReads, with the
// reason it does not read a configured path, or a finding. Before, the
// providers' token, key and credential files, Vault's CA, the identity
// verifiers' bearer and token files and the Redis client pair were read
// with os.ReadFile: a named pipe there hung every fetch of the credential
// (and validate), a link to /dev/zero was read until memory ran out (16
// findings). Entries that match nothing fail too, so the list stays true.
func TestNoUncheckedFileReads(t *testing.T) {
	used := map[string]bool{}
	var calls int
	walkGo(t, func(rel string, lineNo int, line string) {
		for _, loc := range fileOpeners.FindAllStringIndex(line, -1) {
			calls++
			call := callText(line[loc[0]:])
			key := rel + ": " + call
			if _, ok := uncheckedReads[key]; ok {
				used[key] = true
				continue
			}
			if dir := allowedDir(rel); dir != "" {
				used[dir] = true
				continue
			}
			t.Errorf("%s:%d: %s reads a file by name without cfgfile: if the path is one a user configures, read it with cfgfile.Read/ReadSecret (or their Context forms, or providers.ReadFile in a provider); else add %q to uncheckedReads with the reason", rel, lineNo, call, key)
		}
	})
	if calls < 20 {
		t.Fatalf("only %d calls found: is the scan reading the module?", calls)
	}
	reportStale(t, "uncheckedReads", uncheckedReads, used)
}

// reportStale fails on each key of list that used does not hold.
func reportStale(t *testing.T, name string, list map[string]string, used map[string]bool) {
	t.Helper()
	var stale []string
	for k := range list {
		if !used[k] {
			stale = append(stale, k)
		}
	}
	sort.Strings(stale)
	for _, k := range stale {
		t.Errorf("%s has %q, which matches no call: remove it", name, k)
	}
}

// walkGo calls fn with each line, not a comment, of the module's non-test
// Go files (other modules, testdata and hidden folders left out), rel
// being the file's path from the module root with slashes.
func walkGo(t *testing.T, fn func(rel string, lineNo int, line string)) {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(path, root+string(filepath.Separator)))
		if d.IsDir() {
			if path == root {
				return nil
			}
			name := d.Name()
			if strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor" || name == "node_modules" {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // another module (examples/custom-build)
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "//") {
				continue
			}
			fn(rel, i+1, line)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// callText is the call at the start of s, up to its closing parenthesis
// (or the end of the line).
func callText(s string) string {
	depth := 0
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return s[:i+1]
			}
		}
	}
	return strings.TrimSpace(s)
}

// allowedDir is the folder entry of uncheckedReads that holds rel, "" if
// none.
func allowedDir(rel string) string {
	for k := range uncheckedReads {
		if strings.HasSuffix(k, "/") && strings.HasPrefix(rel, k) {
			return k
		}
	}
	return ""
}
