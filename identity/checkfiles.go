package identity

import (
	"fmt"
	"log/slog"
	"strconv"
)

// FileProblem is a file of the identity config that New would refuse.
type FileProblem struct {
	// Key is the path below `identity:` of the setting that names the
	// file; a number is a list index ("mtls", "bundles", "0", "file").
	Key []string
	// Err is New's error for the file, without the "identity: ..."
	// context that Key gives.
	Err error
}

// CheckFiles reads the files the config names as sources of trust and
// posture (mtls.bundles, the jwks_file of jwt.issuers, posture.file) and
// parses each as New does, returning New's error for each that it would
// refuse. It fetches nothing and starts nothing: remote key sets, feeds and
// the Workload API, and the files read only when fetching (ca_file,
// bearer_token_file), are left to New.
func (c Config) CheckFiles() []FileProblem {
	var out []FileProblem
	nop := slog.New(slog.DiscardHandler)
	load := func(path, what string, parse func([]byte) error) error {
		_, err := newFileReloader(path, what, 0, nop, parse).Load()
		return err
	}
	for i, b := range c.MTLS.Bundles {
		err := load(b.File, "trust bundle", func(d []byte) error { _, err := parsePEMCerts(d); return err })
		if err != nil {
			out = append(out, FileProblem{Key: []string{"mtls", "bundles", strconv.Itoa(i), "file"}, Err: err})
		}
	}
	for i, ic := range c.JWT.Issuers {
		if ic.JWKSFile == "" {
			continue
		}
		err := load(ic.JWKSFile, "JWKS", func(d []byte) error { _, err := parseJWKS(d); return err })
		if err != nil {
			out = append(out, FileProblem{Key: []string{"jwt", "issuers", strconv.Itoa(i), "jwks_file"}, Err: fmt.Errorf("issuer %s: %w", issuerName(ic), err)})
		}
	}
	if p := c.Posture; p != nil && p.File != "" {
		err := load(p.File, "posture feed", func(d []byte) error { _, err := parsePosture(d); return err })
		if err != nil {
			out = append(out, FileProblem{Key: []string{"posture", "file"}, Err: err})
		}
	}
	return out
}
