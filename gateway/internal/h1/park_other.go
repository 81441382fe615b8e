//go:build !linux

package h1

// parker parks idle connections on Linux only (park_linux.go); elsewhere
// every idle connection waits on a goroutine.
type parker struct{}

func (*parker) park(*conn) bool     { return false }
func (*parker) takeConn(*conn) bool { return false }

// Parked reports how many idle connections are parked: none here.
func (s *Server) Parked() int { return 0 }
