//go:build linux

package main

// The soak's secret scan: every secret value the run handed the gateway
// or its dependencies must be absent from the gateway's log and audit
// file. The audit file of a 10-minute run is about 2 GB and the values
// number a few hundred (each key and session token STS issued, each
// OAuth2 access token), so the files are streamed once through the
// response scrubber's matcher (transform.Scrubber: every value and its
// encoded forms in one pass, holding back across reads what may begin a
// value), not searched once per value.

import (
	"fmt"
	"io"
	"os"

	"github.com/credgate/credgate/secret"
	"github.com/credgate/credgate/transform"
)

// secretScanner counts the occurrences of a set of secret values, and of
// their encoded forms (base64, URL and JSON escapes: what the scrubber
// redacts), in a stream.
type secretScanner struct {
	s *transform.Scrubber
}

// newSecretScanner builds a scanner for values; empty values are
// ignored. Every value is searched whatever its length (the scrubber's
// minimum is lowered to the shortest value).
func newSecretScanner(values []string) *secretScanner {
	vs := make([]secret.Value, 0, len(values))
	minLen := 0
	for _, v := range values {
		if v == "" {
			continue
		}
		vs = append(vs, secret.New(v))
		if minLen == 0 || len(v) < minLen {
			minLen = len(v)
		}
	}
	return &secretScanner{s: transform.NewScrubber(vs, transform.ScrubOptions{MinLength: max(minLen, 1)})}
}

// count reads r to its end and returns how many occurrences it held.
func (sc *secretScanner) count(r io.Reader) (int64, error) {
	var c transform.ScrubCount
	rd := sc.s.Reader(r, &c)
	buf := make([]byte, 256<<10)
	for {
		_, err := rd.Read(buf)
		if err == io.EOF {
			return c.Count(), nil
		}
		if err != nil {
			return c.Count(), err
		}
	}
}

// countFile streams the file at path through count.
func (sc *secretScanner) countFile(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("secret scan: %w", err)
	}
	defer f.Close()
	n, err := sc.count(f)
	if err != nil {
		return n, fmt.Errorf("secret scan: read %s: %w", path, err)
	}
	return n, nil
}
