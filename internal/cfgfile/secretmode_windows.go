//go:build windows

package cfgfile

import "io/fs"

// owner is -1: Windows has no Unix owner. os.Geteuid returns -1 there,
// so looseness judges nothing (a Windows file's mode bits say nothing of
// who may read it).
func owner(fs.FileInfo) int { return -1 }
