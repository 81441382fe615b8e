package cfgfile

import (
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// LooseMode says how a secret file's mode or owner lets someone other than
// the gateway's user (and root) read or change it. OpenSSH refuses such a
// private key; the gateway does not (a Kubernetes Secret volume is 0644
// unless its defaultMode says otherwise), it warns: credgate validate
// prints it, serve logs it at start and on a config reload.
//
// What counts, and why:
//   - readable by others (mode & 0o004): any process of any user on the
//     node (or in the container) can read the secret.
//   - writable by group or others (mode & 0o022): someone else can replace
//     the secret: a CA key or admin token of their choosing.
//   - owned by a user other than root and the gateway's user: that user can
//     chmod it or rewrite it at will.
//
// Readable by the group (0440, 0640) is fine: a pod's fsGroup gives the
// gateway's user the file through its group, which is how the chart mounts
// its Secrets (defaultMode 0440).
type LooseMode struct {
	// Path is the file as the config names it.
	Path string
	// Mode is the permission bits of the file the path leads to, after
	// symbolic links (Kubernetes' ..data links).
	Mode fs.FileMode
	// Problems says what is wrong, each in a few words.
	Problems []string
}

// String is the warning: the file, its mode, what is wrong, and the fix.
// It never holds the file's content.
func (l *LooseMode) String() string {
	return fmt.Sprintf("%s has mode %04o (%s); secrets should be readable only by the gateway's user (and its group): chmod 0400 %s, or on Kubernetes set the Secret volume's defaultMode (or items[].mode) to 0400 or 0440",
		l.Path, uint32(l.Mode.Perm()), strings.Join(l.Problems, ", "), l.Path)
}

// CheckSecretMode looks at the file path leads to (after symbolic links,
// as a read does) and returns how its mode or owner is loose, nil when it
// is not or when the platform has no such modes (Windows). An error is
// os.Stat's: a file that cannot be looked at is one its reader reports.
func CheckSecretMode(path string) (*LooseMode, error) {
	return checkMode(path, false)
}

// CheckTokenMode is CheckSecretMode for a Kubernetes service-account
// token (a projected volume's token, or a token of that kind: short-lived,
// bound to an audience, rotated by the kubelet): readable by others is
// not judged, as Kubernetes itself mounts such a token 0644 unless the
// pod runs as one user, and a warning on it would fire in every pod with
// no fix the operator can make short of replacing the projection; the
// token expires within the hour and is worth nothing to another
// audience. Writable by the group or others and a foreign owner are
// judged as for any secret: whoever can replace the token chooses the
// identity the gateway presents.
func CheckTokenMode(path string) (*LooseMode, error) {
	return checkMode(path, true)
}

// checkMode is CheckSecretMode and CheckTokenMode: readOK leaves out
// "readable by others".
func checkMode(path string, readOK bool) (*LooseMode, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	probs := looseness(fi.Mode(), owner(fi), os.Geteuid(), readOK)
	if len(probs) == 0 {
		return nil, nil
	}
	return &LooseMode{Path: path, Mode: fi.Mode().Perm(), Problems: probs}, nil
}

// looseness is CheckSecretMode's judgement of a file of mode m owned by
// uid (-1: unknown) for a gateway running as euid (-1: a platform without
// owners); readOK (CheckTokenMode) leaves out "readable by others". It is
// the one copy of the rule: the gateway config's secret files and the
// policy's credential files are judged by it.
func looseness(m fs.FileMode, uid, euid int, readOK bool) []string {
	if euid < 0 {
		return nil
	}
	var out []string
	if m&0o004 != 0 && !readOK {
		out = append(out, "readable by others")
	}
	switch {
	case m&0o022 == 0o022:
		out = append(out, "writable by group and others")
	case m&0o020 != 0:
		out = append(out, "writable by group")
	case m&0o002 != 0:
		out = append(out, "writable by others")
	}
	if uid > 0 && uid != euid {
		out = append(out, fmt.Sprintf("owned by uid %d, neither root nor the gateway's user (uid %d)", uid, euid))
	}
	return out
}
