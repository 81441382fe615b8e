//go:build linux

package runrelay

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// SameUserSupported reports whether Config.SameUser can admit a client:
// Linux names the owner of each TCP socket in its socket tables.
const SameUserSupported = true

// procNetFiles are the kernel's TCP socket tables of this network
// namespace: a client's AF_INET6 socket (Java's default) connected to
// 127.0.0.1 is in tcp6, as ::ffff:127.0.0.1.
var procNetFiles = []string{"/proc/net/tcp", "/proc/net/tcp6"}

// maxProcNetLines bounds the lines read of each table.
const maxProcNetLines = 1 << 20

// peerUID returns the user owning the client end of c, a TCP connection
// accepted on loopback: the socket of the kernel's table whose local
// address is c's remote one and whose remote address is c's local one.
// SO_PEERCRED answers this for Unix sockets only; for TCP the kernel's
// table is the source (what identd reads). While c is open that pair of
// addresses names one socket: its port cannot be taken by another.
func peerUID(c net.Conn) (int, error) {
	local, ok1 := c.LocalAddr().(*net.TCPAddr)
	remote, ok2 := c.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return 0, errors.New("not a TCP connection")
	}
	want := [2]netip.AddrPort{remote.AddrPort(), local.AddrPort()}
	for i := range want {
		want[i] = netip.AddrPortFrom(want[i].Addr().Unmap(), want[i].Port())
	}
	for _, f := range procNetFiles {
		uid, found, err := scanProcNet(f, want)
		if err != nil {
			return 0, err
		}
		if found {
			return uid, nil
		}
	}
	return 0, errors.New("the client's socket is in no table of /proc/net")
}

// scanProcNet looks for the socket whose local and remote addresses are
// want in one /proc/net/tcp* table.
func scanProcNet(file string, want [2]netip.AddrPort) (uid int, found bool, err error) {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil // no IPv6
	}
	if err != nil {
		return 0, false, fmt.Errorf("peer uid: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 0; n < maxProcNetLines && sc.Scan(); n++ {
		uid, ok := procNetEntry(sc.Text(), want)
		if ok {
			return uid, true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, false, fmt.Errorf("peer uid: read %s: %w", file, err)
	}
	return 0, false, nil
}

// procNetEntry parses one line of /proc/net/tcp or tcp6 ("sl local
// remote st queues tr retrnsmt uid ...") and returns its uid when its
// local and remote addresses are want.
func procNetEntry(line string, want [2]netip.AddrPort) (int, bool) {
	fields := strings.Fields(line)
	if len(fields) < 8 {
		return 0, false
	}
	for i := range want {
		ap, ok := procNetAddr(fields[1+i])
		if !ok || ap != want[i] {
			return 0, false
		}
	}
	uid, err := strconv.Atoi(fields[7])
	if err != nil || uid < 0 {
		return 0, false
	}
	return uid, true
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
