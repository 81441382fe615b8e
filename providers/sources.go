package providers

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/credgate/credgate/internal/cfgfile"
)

// SourceProblem is one setting of a provider whose source (an environment
// variable, a file) cannot be read now, as SourceChecker reports it.
type SourceProblem struct {
	// Setting is the setting's path in the provider's settings, its
	// mapping keys joined by dots ("env", "fields.api_key.file",
	// "key.file"), so that the policy can point at its line.
	Setting string
	// Err names the variable or file and says how to fix it; it never
	// holds a value. It wraps ErrNotConfigured, or ErrLooseMode when
	// Warning is set.
	Err error
	// Warning marks a problem that does not stop the source being read:
	// a secret file whose mode lets others than the gateway's user read
	// it, or the group or others write it, or whose owner is neither root
	// nor the gateway's user (CheckSecretFile, CheckTokenFile). The file
	// is used anyway; `credgate validate` prints it as a warning without
	// failing, serve logs it once per policy load.
	Warning bool
}

// ErrLooseMode is wrapped by the Err of a SourceProblem that is a
// Warning about a secret file's mode (CheckSecretFile, CheckTokenFile).
var ErrLooseMode = errors.New("secret file mode is loose")

// SourceChecker is implemented by providers that read their credential,
// or what they present to get one, from environment variables or files
// named in their settings and read only when they fetch. CheckSources
// reads each of them now, as a Fetch would, and returns one problem per
// variable that is unset or empty and per file that is missing,
// unreadable or empty; nil when all can be read. It never returns a
// value read. `credgate validate` reports each problem as an error at
// its setting's line, and `credgate serve` logs each as a warning when a
// policy is loaded (the credential then fails its requests with 502
// credential_not_configured until the source is there).
type SourceChecker interface {
	CheckSources() []SourceProblem
}

// CheckEnv returns nil when the environment variable name is set and not
// empty, else an error naming it and the fix, wrapping ErrNotConfigured.
// what names the setting.
func CheckEnv(what, name string) error {
	if os.Getenv(name) == "" {
		return fmt.Errorf("%s: environment variable %s is not set or empty in the gateway's environment; export it before starting credgate serve: %w", what, name, ErrNotConfigured)
	}
	return nil
}

// ReadFile reads the file a provider's setting names while a fetch waits,
// through cfgfile: a named pipe (whose read waits for a writer forever,
// holding the request and every later fetch of the credential), a device
// such as /dev/zero (read until memory runs out), a directory and a file
// over cfgfile.MaxSecretBytes (64 KiB, far more than a token, a key or a
// certificate chain needs) are refused at once, never read, and ctx ends
// the read. setting names the setting ("google: key.file"), holds what
// the file should hold ("the key"); errors are FileError's. Every
// provider, injector and verifier reads a configured file through
// ReadFile or cfgfile (internal/cfgfile TestNoUncheckedFileReads).
func ReadFile(ctx context.Context, setting, holds, path string) ([]byte, error) {
	b, err := cfgfile.ReadSecretContext(ctx, path)
	if err != nil {
		return nil, FileError(setting, path, holds, err)
	}
	return b, nil
}

// FileError describes err, from reading through cfgfile the file path
// that setting names ("google: key.file"), saying what to fix: a file
// that is not a regular one or is too large wraps ErrNotConfigured with
// cfgfile's words (what the path is and what to name instead); a file
// that cannot be opened or read says why (no such file, permission
// denied) and to check the path and the permission; ctx's error is
// wrapped as it is. It never holds the file's content.
func FileError(setting, path, holds string, err error) error {
	var pe *fs.PathError
	switch {
	case errors.Is(err, cfgfile.ErrNotRegular), errors.Is(err, cfgfile.ErrTooLarge):
		return fmt.Errorf("%s: %w: %w", setting, err, ErrNotConfigured)
	case errors.As(err, &pe):
		return fmt.Errorf("%s %s: cannot read %s (%w); check the path and the gateway's permission to read it", setting, path, holds, pe.Err)
	}
	return fmt.Errorf("%s %s: %w", setting, path, err)
}

// CheckFile returns nil when path names a readable regular file (or a
// link to one) that holds more than line breaks, else an error naming the
// path (said relative to the working directory when it is relative) and
// the fix, wrapping ErrNotConfigured. what names the setting, holds what
// the file should hold ("the credential", "a PEM private key"). A named
// pipe or device is refused without being opened, so a check never
// blocks. Only presence is checked, not the contents' format. The file
// is held to the bound ReadFile reads it with (cfgfile.MaxSecretBytes), so
// a file the check passes is one a fetch can read; CheckCAFile is for
// files of CA certificates, which may be larger.
func CheckFile(what, path, holds string) error {
	return checkFile(what, path, holds, cfgfile.ReadSecret)
}

// CheckSecretFile is CheckFile for a file that holds a secret (a
// credential, a private key, a Vault token or AppRole id), as a
// SourceChecker reports it: no problem when the file can be read and
// only the gateway's user (and its group) may read it; else one problem
// at setting: CheckFile's error when it cannot be read, or a Warning
// when its mode or owner is loose by the rule the gateway config's
// secret files are judged by (cfgfile.CheckSecretMode: readable by
// others, writable by the group or others, owned by another user than
// root and the gateway's), saying the file, its mode and the fix (chmod
// 0400, or the Secret volume's defaultMode). The file is used either
// way. module names the provider in the message ("static"), setting is
// the setting's path in its settings ("fields.api_key.file"), holds what
// the file should hold ("the credential"). Nothing read is reported.
func CheckSecretFile(module, setting, path, holds string) []SourceProblem {
	return checkSecretFile(module, setting, path, holds, cfgfile.CheckSecretMode)
}

// CheckTokenFile is CheckSecretFile for a file holding a Kubernetes
// service-account token or a token of that kind (a projected, short-lived,
// audience-bound JWT that the kubelet writes and rotates): Kubernetes
// mounts it 0644, so readable by others is not judged; writable by the
// group or others and a foreign owner are (cfgfile.CheckTokenMode).
func CheckTokenFile(module, setting, path, holds string) []SourceProblem {
	return checkSecretFile(module, setting, path, holds, cfgfile.CheckTokenMode)
}

func checkSecretFile(module, setting, path, holds string, judge func(string) (*cfgfile.LooseMode, error)) []SourceProblem {
	what := module + ": " + setting
	if err := CheckFile(what, path, holds); err != nil {
		return []SourceProblem{{Setting: setting, Err: err}}
	}
	lm, err := judge(path)
	if err != nil || lm == nil {
		// Gone since CheckFile looked: the fetch that reads it says so.
		return nil
	}
	return []SourceProblem{{Setting: setting, Warning: true, Err: fmt.Errorf("%s: %s%.0w", what, lm, ErrLooseMode)}}
}

// CheckCAFile is CheckFile for a file of PEM CA certificates, held to
// cfgfile.Read's larger bound (the bound of httpclient.ReadRoots).
func CheckCAFile(what, path, holds string) error {
	return checkFile(what, path, holds, cfgfile.Read)
}

func checkFile(what, path, holds string, read func(string) ([]byte, error)) error {
	where := path
	if !filepath.IsAbs(path) {
		if wd, werr := os.Getwd(); werr == nil {
			where += " (relative to the gateway's working directory " + wd + ")"
		}
	}
	var b []byte
	fi, err := os.Stat(path)
	if err == nil {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s: %s is %s, not a regular file; point it at a file holding %s: %w", what, where, cfgfile.Kind(fi.Mode()), holds, ErrNotConfigured)
		}
		b, err = read(path)
	}
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: %s does not exist; create it holding %s, or correct the path: %w", what, where, holds, ErrNotConfigured)
	case errors.Is(err, cfgfile.ErrNotRegular), errors.Is(err, cfgfile.ErrTooLarge):
		// Swapped in since the Stat: cfgfile's words.
		return fmt.Errorf("%s: %w; point it at a file holding %s: %w", what, err, holds, ErrNotConfigured)
	case errors.As(err, &pe):
		return fmt.Errorf("%s: %s cannot be read (%w); give the gateway's user permission to read it: %w", what, where, pe.Err, ErrNotConfigured)
	case err != nil:
		return fmt.Errorf("%s: %s cannot be read (%w): %w", what, where, err, ErrNotConfigured)
	case strings.TrimRight(string(b), "\r\n") == "":
		return fmt.Errorf("%s: %s is empty; write %s into it: %w", what, where, holds, ErrNotConfigured)
	}
	return nil
}
