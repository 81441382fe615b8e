//go:build !unix

package writable

import (
	"fmt"
	"os"
)

// access has no access(2) to ask where there is none (Windows): a file
// whose read-only attribute is set (Go's mode without 0200) may not be
// written; anything else is taken as writable, and a failed write at
// run time says otherwise.
func access(path string, _ bool) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o200 == 0 {
		return fmt.Errorf("%s is read-only", path)
	}
	return nil
}
