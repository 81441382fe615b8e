//go:build !windows

package cfgfile

import (
	"io/fs"
	"syscall"
)

// owner is the uid that owns the file fi describes, -1 if unknown.
func owner(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}
