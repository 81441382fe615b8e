package killswitch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/credgate/credgate/internal/atomicfile"
	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/internal/writable"
)

// stateFileVersion is the version of the state file this credgate
// writes and reads. A change that an older reader would misread (a
// field that narrows or adds a switch) raises it; a file of a higher
// version is refused with an error that says so.
const stateFileVersion = 1

// stateFile is the state file's content.
type stateFile struct {
	// Version is stateFileVersion.
	Version int `json:"version"`
	// Generation is the state's generation in Redis, so that a replica
	// that restarts still refuses an older state copied back into Redis.
	Generation uint64 `json:"generation,omitempty"`
	// Switches are the switches in force, Pending included.
	Switches []Entry `json:"switches"`
	// Pending are the IDs of the switches disabled on this replica while
	// Redis was unavailable and not yet written to it: a replica that
	// restarts before Redis answers still writes them back, rather than
	// taking them for switches the fleet had and dropping them when the
	// state in Redis lacks them. (A file written by a version without
	// the field reads as having none pending.)
	Pending []string `json:"pending,omitempty"`
	// Newer are the fields of the state in Redis that a newer credgate
	// wrote and this version cannot read (ReasonNewer), as they were
	// read: a replica that restarts while Redis is unavailable still
	// knows it holds a switch it cannot enforce (and refuses every
	// request), and writes them back. (A version without the field
	// ignores it.)
	Newer map[string]string `json:"newer,omitempty"`
}

// CheckStateFile reads the state file at path as New does, without
// applying it: an error is what New would return for it (a missing file
// holds no switches and is no error), or says that its directory does
// not exist or is not writable, so a switch could not be kept. credgate
// validate and serve call it.
func CheckStateFile(path string) error {
	if _, _, _, _, err := readStateFile(path); err != nil {
		return err
	}
	return checkStateDir(path)
}

// checkStateDir says why the state file at path could not be saved.
func checkStateDir(path string) error {
	// The state is saved by writing a temporary file beside it and
	// renaming it over the old one: the directory must take both.
	dir := filepath.Dir(path)
	err := writable.Dir(dir)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("killswitch: the state file's directory %s does not exist; create it (the gateway writes the file, not its directory), or the switches are lost at restart", dir)
	case errors.Is(err, writable.ErrNotDir):
		return fmt.Errorf("killswitch: %s is not a directory; name a file in a directory", dir)
	case errors.Is(err, writable.ErrDenied):
		return fmt.Errorf("killswitch: the state file's directory %s is not writable by the gateway's user (uid %d), which saves %s there by writing a file beside it and renaming it; change its owner or mode", dir, os.Getuid(), filepath.Base(path))
	default:
		return fmt.Errorf("killswitch: state file: %w", err)
	}
}

// readStateFile returns the entries of path, their generation, which
// of them are pending, and the fields of a newer credgate it keeps; a
// missing file holds none.
func readStateFile(path string) (entries []Entry, gen uint64, pending map[string]bool, newer map[string]string, err error) {
	b, err := cfgfile.Read(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil, nil, nil
	}
	if err != nil {
		return nil, 0, nil, nil, fmt.Errorf("killswitch: state file: %w", err)
	}
	var sf stateFile
	if err := json.Unmarshal(b, &sf); err != nil {
		return nil, 0, nil, nil, fmt.Errorf("killswitch: state file %s is not valid JSON (%v); fix or remove it (switches it held are then enabled)", path, err)
	}
	// A file this version cannot read wholly is refused, not read in
	// part: the switches it cannot read would be lifted (fail closed:
	// the gateway does not start).
	switch {
	case sf.Version > stateFileVersion:
		return nil, 0, nil, nil, fmt.Errorf("killswitch: state file %s has version %d, newer than this credgate reads (%d): it was written by a newer credgate; run that version or a newer one (rolling back: start this version only once no switch of the newer version is in force, and with a state file it wrote)", path, sf.Version, stateFileVersion)
	case sf.Version != stateFileVersion:
		return nil, 0, nil, nil, fmt.Errorf("killswitch: state file %s: unknown version %d (want %d); fix or remove it (switches it held are then enabled)", path, sf.Version, stateFileVersion)
	}
	for i, e := range sf.Switches {
		if err := e.Validate(); err != nil {
			if _, kerr := ParseKind(string(e.Kind)); kerr != nil && e.Kind != "" {
				return nil, 0, nil, nil, fmt.Errorf("killswitch: state file %s: switch %d is of kind %q, which this version of credgate does not know: it was written by a newer credgate; run that version (or enable the switch there first), since this one cannot enforce it: %w", path, i, inertField(string(e.Kind)), err)
			}
			return nil, 0, nil, nil, fmt.Errorf("killswitch: state file %s: switch %d: %w", path, i, err)
		}
	}
	pending = make(map[string]bool, len(sf.Pending))
	for _, id := range sf.Pending {
		pending[id] = true
	}
	return sf.Switches, sf.Generation, pending, sf.Newer, nil
}

// writeStateFile replaces path atomically and durably (atomicfile.Write:
// a temporary file in the same directory, synced, renamed, then the
// directory synced), so a crash or power loss leaves the old or the new
// state, never half of one, and never the old one after a change
// returned. pending are the IDs of the pending entries.
func writeStateFile(path string, gen uint64, entries []Entry, pending []string, newer map[string]string) error {
	if entries == nil {
		entries = []Entry{}
	}
	b, err := json.MarshalIndent(stateFile{Version: stateFileVersion, Generation: gen, Switches: entries, Pending: pending, Newer: newer}, "", "  ")
	if err != nil {
		return fmt.Errorf("killswitch: state file: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("killswitch: state file: %w", err)
	}
	return nil
}

// ReadStateFile returns the switches the state file at path holds, as a
// gateway without Redis enforces them when it starts from it (a missing
// file holds none). credgate explain reads it.
func ReadStateFile(path string) (*Snapshot, error) {
	entries, _, _, _, err := readStateFile(path)
	if err != nil {
		return nil, err
	}
	m := make(map[string]Entry, len(entries))
	for _, e := range entries {
		m[e.ID()] = e
	}
	return newSnapshot(m), nil
}
