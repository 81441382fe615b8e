//go:build linux

package runrelay

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// DescendantsSupported reports whether Config.Descendants can admit a
// client: Linux names each TCP socket's owner and inode in its socket
// tables, and /proc the processes holding each socket.
const DescendantsSupported = true

// procNetFiles are the kernel's TCP socket tables of this network
// namespace: a client's AF_INET6 socket (Java's default) connected to
// 127.0.0.1 is in tcp6, as ::ffff:127.0.0.1.
var procNetFiles = []string{"/proc/net/tcp", "/proc/net/tcp6"}

// Bounds of one look-up: the lines read of each socket table, the
// entries of /proc (processes) read, the descendants searched and the
// descriptors read. A look-up over a bound admits nothing.
const (
	maxProcNetLines = 1 << 20
	maxProcs        = 1 << 18
	maxDescendants  = 1 << 14
	maxFDs          = 1 << 20
)

// process names one process for the life of it: its id and its start
// time (clock ticks after boot, /proc/PID/stat's field 22). An id alone
// is not a name: once its process has exited and been reaped, the
// kernel gives it to the next process started, which may be anyone's.
type process struct {
	pid   int
	start uint64
}

// commandProcess names pid, the command credgate run started, by its id
// and start time, read while the command cannot yet have been reaped
// (credgate run waits for it later); the zero process when pid is not
// running.
func commandProcess(pid int) process {
	st, ok := readStat(pid)
	if !ok {
		return process{}
	}
	return process{pid: pid, start: st.start}
}

// commandPeer returns nil when the client end of c, a TCP connection
// accepted on loopback, is a socket of this process's user held by
// process root (the command credgate run started) or one of its
// descendants; else an error naming why not. The network namespace is
// not the boundary: the other containers of a Kubernetes pod share it
// (and often the uid), but their processes are no descendants of root
// (nor, without a shared PID namespace, in this /proc at all), and
// neither is any other process of this user on the machine.
//
// Processes are named by id and start time (process), and a holder is
// admitted only when, after its descriptors were read, it and every
// process between it and root are still the processes the tree was
// built from: an id read at one moment and used at another may have
// passed to another process in between (the command reaped and its id
// reused before the relay closes; a descendant exited and its id taken
// by a process of another container sharing the PID namespace, whose
// descriptors, or children, would otherwise count as the command's).
func commandPeer(c net.Conn, root process) error {
	if root.pid <= 0 {
		return errors.New("the command has not started")
	}
	uid, inode, err := peerSocket(c)
	if err != nil {
		return err
	}
	if uid != os.Getuid() {
		return fmt.Errorf("the client's socket is user %d's, not %d's", uid, os.Getuid())
	}
	if inode == 0 {
		return errors.New("the client's socket is held by no process (inode 0)")
	}
	link := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	budget := maxFDs
	// The command itself first (Java started directly, or exec'd by a
	// wrapper script), then the tree of /proc.
	if holds(root.pid, link, &budget) {
		return stillDescends(root.pid, nil, root)
	}
	pids, tree, err := descendants(root.pid)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if holds(pid, link, &budget) {
			return stillDescends(pid, tree, root)
		}
		if budget <= 0 {
			return fmt.Errorf("over %d descriptors read", maxFDs)
		}
	}
	return errors.New("the client's socket is held by no process of the command's")
}

// stillDescends returns nil when pid, whose descriptors were just read,
// and each process between it and root (by the parents in tree, the
// stat of each process as read when the tree was built) are still those
// processes, with the same parents, and root is still the command; else
// an error saying the tree changed while it was read.
func stillDescends(pid int, tree map[int]stat, root process) error {
	for n := 0; n <= maxDescendants; n++ {
		now, ok := readStat(pid)
		if pid == root.pid {
			if !ok || now.start != root.start {
				return errors.New("the command has exited (its process id names another process)")
			}
			return nil
		}
		then, known := tree[pid]
		if !ok || !known || now != then {
			return fmt.Errorf("process %d exited or changed while the process tree was read", pid)
		}
		pid = then.ppid
	}
	return fmt.Errorf("process tree: over %d processes below the command", maxDescendants)
}

// descendants returns the processes below root (root excluded), from the
// parent of each process of /proc/PID/stat, and the stat of every
// process read. A process that exits while /proc is read is skipped.
func descendants(root int) ([]int, map[int]stat, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, nil, fmt.Errorf("process tree: %w", err)
	}
	defer d.Close()
	tree := map[int]stat{}
	children := map[int][]int{}
	for n := 0; ; {
		names, err := d.Readdirnames(1024)
		for _, name := range names {
			pid, err := strconv.Atoi(name)
			if err != nil || pid <= 0 {
				continue // not a process
			}
			if n++; n > maxProcs {
				return nil, nil, fmt.Errorf("process tree: over %d processes", maxProcs)
			}
			if st, ok := readStat(pid); ok {
				tree[pid] = st
				children[st.ppid] = append(children[st.ppid], pid)
			}
		}
		if errors.Is(err, io.EOF) || (err == nil && len(names) == 0) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("process tree: %w", err)
		}
	}
	var out []int
	queue := children[root]
	seen := map[int]bool{root: true}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		if out = append(out, pid); len(out) > maxDescendants {
			return nil, nil, fmt.Errorf("process tree: over %d processes below the command", maxDescendants)
		}
		queue = append(queue, children[pid]...)
	}
	return out, tree, nil
}

// stat is what the relay takes of /proc/PID/stat: the parent and the
// start time, which together with the id name a process's place in the
// tree (process).
type stat struct {
	ppid  int
	start uint64
}

// readStat reads pid's stat ("pid (comm) state ppid ... starttime ...";
// comm may hold spaces and parentheses, so the fields are those after
// its last ')', starttime the 20th of them); false when pid has exited.
func readStat(pid int) (stat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, false
	}
	return parseStat(b)
}

// parseStat parses the contents of /proc/PID/stat (readStat).
func parseStat(b []byte) (stat, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return stat{}, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return stat{}, false
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return stat{}, false
	}
	return stat{ppid: ppid, start: start}, true
}

// holds reports whether one of pid's descriptors is link ("socket:[INODE]"),
// reading at most *budget of them (and taking those read from it). A
// process that has exited, or whose descriptors this user may not read,
// holds nothing.
func holds(pid int, link string, budget *int) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	d, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer d.Close()
	for *budget > 0 {
		names, err := d.Readdirnames(min(*budget, 1024))
		for _, name := range names {
			*budget--
			if l, err := os.Readlink(dir + name); err == nil && l == link {
				return true
			}
		}
		if err != nil || len(names) == 0 {
			return false
		}
	}
	return false
}

// peerSocket returns the user owning the client end of c, a TCP
// connection accepted on loopback, and its inode: the socket of the
// kernel's table whose local address is c's remote one and whose remote
// address is c's local one. SO_PEERCRED answers this for Unix sockets
// only; for TCP the kernel's table is the source (what identd reads).
// While c is open that pair of addresses names one socket: its port
// cannot be taken by another.
func peerSocket(c net.Conn) (uid int, inode uint64, err error) {
	local, ok1 := c.LocalAddr().(*net.TCPAddr)
	remote, ok2 := c.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return 0, 0, errors.New("not a TCP connection")
	}
	want := [2]netip.AddrPort{remote.AddrPort(), local.AddrPort()}
	for i := range want {
		want[i] = netip.AddrPortFrom(want[i].Addr().Unmap(), want[i].Port())
	}
	for _, f := range procNetFiles {
		e, found, err := scanProcNet(f, want)
		if err != nil {
			return 0, 0, err
		}
		if found {
			return e.uid, e.inode, nil
		}
	}
	return 0, 0, errors.New("the client's socket is in no table of /proc/net")
}

// scanProcNet looks for the socket whose local and remote addresses are
// want in one /proc/net/tcp* table.
func scanProcNet(file string, want [2]netip.AddrPort) (e socketEntry, found bool, err error) {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return e, false, nil // no IPv6
	}
	if err != nil {
		return e, false, fmt.Errorf("peer socket: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 0; n < maxProcNetLines && sc.Scan(); n++ {
		if e, ok := procNetEntry(sc.Text(), want); ok {
			return e, true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return e, false, fmt.Errorf("peer socket: read %s: %w", file, err)
	}
	return e, false, nil
}

// socketEntry is what the relay takes of a socket table's line: the
// socket's owner and its inode (0 for a socket no process holds).
type socketEntry struct {
	uid   int
	inode uint64
}

// procNetEntry parses one line of /proc/net/tcp or tcp6 ("sl local
// remote st queues tr retrnsmt uid timeout inode ...") and returns its
// uid and inode when its local and remote addresses are want.
func procNetEntry(line string, want [2]netip.AddrPort) (socketEntry, bool) {
	fields := strings.Fields(line)
	if len(fields) < 10 {
		return socketEntry{}, false
	}
	for i := range want {
		ap, ok := procNetAddr(fields[1+i])
		if !ok || ap != want[i] {
			return socketEntry{}, false
		}
	}
	uid, err := strconv.Atoi(fields[7])
	if err != nil || uid < 0 {
		return socketEntry{}, false
	}
	inode, err := strconv.ParseUint(fields[9], 10, 64)
	if err != nil {
		return socketEntry{}, false
	}
	return socketEntry{uid: uid, inode: inode}, true
}

// procNetAddr parses an address of /proc/net/tcp*: the address as 32-bit
// words in host byte order (Linux on a little-endian machine prints
// 127.0.0.1 as 0100007F), a colon and the port in hex. IPv4-mapped IPv6
// addresses are returned as IPv4.
func procNetAddr(s string) (netip.AddrPort, bool) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || (len(a) != 8 && len(a) != 32) {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	raw, err := hex.DecodeString(a)
	if err != nil {
		return netip.AddrPort{}, false
	}
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 { // little-endian
		for w := 0; w+4 <= len(raw); w += 4 {
			raw[w], raw[w+1], raw[w+2], raw[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
		}
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), true
}
