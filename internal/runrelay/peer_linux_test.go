//go:build linux

package runrelay

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRelayDescendants: with Descendants (Linux), a client that presents
// no proxy credentials is admitted only when its socket is held by the
// command the run started (SetCommand) or one of its descendants — over
// an IPv4 socket and over an IPv6 one connected to ::ffff:127.0.0.1, as
// Java connects. A process of the same user that is not the command's
// (a sibling the test starts, the relay's own process: what another
// container of a Kubernetes pod or another credgate run on the machine
// is), any client before SetCommand, and a client presenting a wrong
// secret, whoever it is, are refused 407 and the gateway sees nothing.
func TestRelayDescendants(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, c := range []struct {
		name string
		// shape: "child" (the client is the command), "grandchild" (sh
		// runs it), "sibling" (the command is another process; the test
		// starts the client), "unset" (no SetCommand), "relay" (the
		// test's own process dials).
		shape, mode string
		admit       bool
	}{
		{"the command, IPv4", "child", "v4", true},
		{"the command, IPv6 socket v4-mapped", "child", "mapped", true},
		{"a grandchild (sh -c)", "grandchild", "v4", true},
		{"a grandchild, v4-mapped", "grandchild", "mapped", true},
		{"a sibling of the same user", "sibling", "v4", false},
		{"a sibling, v4-mapped", "sibling", "mapped", false},
		{"the relay's own process", "relay", "v4", false},
		{"before SetCommand", "unset", "v4", false},
		{"the command, wrong secret", "child", "wrong", false},
		{"a grandchild, wrong secret", "grandchild", "wrong", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			gw := startFakeGateway(t, nil)
			r := startRelay(t, Config{Gateway: &url.URL{Scheme: "http", Host: gw.ln.Addr().String()}, Token: token, Descendants: true})
			client := func(args ...string) (*exec.Cmd, io.WriteCloser, *strings.Builder) {
				cmd := exec.CommandContext(t.Context(), args[0], args[1:]...)
				cmd.Env = append(os.Environ(), "CREDGATE_RELAY_TEST_CLIENT="+c.mode, "CREDGATE_RELAY_TEST_ADDR="+r.Addr())
				out := &strings.Builder{}
				cmd.Stdout, cmd.Stderr = out, out
				in, err := cmd.StdinPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				return cmd, in, out
			}
			helper := []string{exe, "-test.run=^TestRelayHelperClient$", "-test.count=1"}
			var status string
			finish := func(cmd *exec.Cmd, in io.WriteCloser, out *strings.Builder) func() {
				_, _ = io.WriteString(in, "go\n") // the client dials now
				_ = in.Close()
				return func() {
					_ = cmd.Wait()
					status = out.String()
				}
			}
			var wait func()
			switch c.shape {
			case "child", "unset", "grandchild":
				args := helper
				if c.shape == "grandchild" {
					args = append([]string{sh, "-c", `"$@"; exit $?`, "sh"}, helper...)
				}
				cmd, in, out := client(args...)
				if c.shape != "unset" {
					r.SetCommand(cmd.Process.Pid)
				}
				wait = finish(cmd, in, out)
			case "sibling":
				command, cin, _ := client(sh, "-c", "read x")
				defer func() { _ = cin.Close(); _ = command.Wait() }()
				r.SetCommand(command.Process.Pid)
				cmd, in, out := client(helper...)
				wait = finish(cmd, in, out)
			case "relay":
				command, cin, _ := client(sh, "-c", "read x")
				defer func() { _ = cin.Close(); _ = command.Wait() }()
				r.SetCommand(command.Process.Pid)
				done := make(chan string, 1)
				go func() {
					done <- relayClient(c.mode, r.Addr(), func() (net.Conn, error) { return net.Dial("tcp4", r.Addr()) })
				}()
				wait = func() { status = <-done }
			}
			if c.admit {
				g := gw.next(t)
				got, err := http.ReadRequest(bufio.NewReader(g))
				if err != nil {
					t.Fatal(err)
				}
				if v := got.Header.Values("Proxy-Authorization"); len(v) != 1 || v[0] != "Bearer "+token {
					t.Errorf("the gateway got Proxy-Authorization %q, want the run token", v)
				}
				_, _ = io.WriteString(g, "HTTP/1.1 200 Connection established\r\n\r\n")
				g.Close()
			}
			wait()
			want := "status=407"
			if c.admit {
				want = "status=200"
			}
			if !strings.Contains(status, want) {
				t.Fatalf("the client got %q, want %s", status, want)
			}
			if !c.admit {
				select {
				case g := <-gw.conns:
					g.Close()
					t.Fatal("the gateway got a connection")
				default:
				}
			}
		})
	}
}

// TestRelayHelperClient is the client process of TestRelayDescendants
// (it does nothing in a plain test run): it waits for a line on stdin,
// sends a CONNECT to the relay at CREDGATE_RELAY_TEST_ADDR as its mode
// says (v4: an IPv4 socket, no credentials; mapped: an IPv6 socket to
// ::ffff:127.0.0.1, no credentials; wrong: IPv4, a wrong secret) and
// prints status=CODE of the relay's answer.
func TestRelayHelperClient(t *testing.T) {
	mode, addr := os.Getenv("CREDGATE_RELAY_TEST_CLIENT"), os.Getenv("CREDGATE_RELAY_TEST_ADDR")
	if mode == "" {
		t.Skip("the client process of TestRelayDescendants")
	}
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	dial := func() (net.Conn, error) { return net.Dial("tcp4", addr) }
	if mode == "mapped" {
		dial = func() (net.Conn, error) { return dialMapped(t, addr), nil }
	}
	fmt.Println(relayClient(mode, addr, dial))
}

// relayClient sends one CONNECT through the relay at addr on a
// connection of dial, with a wrong secret in mode "wrong", and returns
// "status=CODE" of the relay's answer (or the error).
func relayClient(mode, addr string, dial func() (net.Conn, error)) string {
	conn, err := dial()
	if err != nil {
		return "error=" + err.Error()
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	req := "CONNECT api.example.test:443 HTTP/1.1\r\nHost: api.example.test:443\r\n"
	if mode == "wrong" {
		req += "Proxy-Authorization: " + basic(User, "wrong") + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		return "error=" + err.Error()
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "error=" + err.Error()
	}
	return fmt.Sprintf("status=%d", resp.StatusCode)
}

// dialMapped connects an AF_INET6 socket to addr (127.0.0.1:PORT) as
// ::ffff:127.0.0.1, as Java's dual-stack sockets do (net.Dial will not).
func dialMapped(t *testing.T, addr string) net.Conn {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Skipf("no IPv6 sockets: %v", err)
	}
	f := os.NewFile(uintptr(fd), "mapped")
	defer f.Close()
	sa := &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: netip.AddrFrom16(ap.Addr().As16()).As16()}
	if err := syscall.Connect(fd, sa); err != nil {
		t.Skipf("connect to ::ffff:%s: %v", addr, err)
	}
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestProcNetEntry: lines of /proc/net/tcp and tcp6 as a little-endian
// Linux prints them; only the socket whose local and remote addresses
// are the ones asked for gives its uid.
func TestProcNetEntry(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the sample lines are a little-endian machine's")
	}
	want := [2]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort("127.0.0.1:3128")}
	for _, c := range []struct {
		name, line string
		want       socketEntry
		ok         bool
	}{
		{"header", "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode", socketEntry{}, false},
		{"ipv4", "   3: 0100007F:9C40 0100007F:0C38 01 00000000:00000000 00:00000000 00000000  1000        0 123 1 0 20 4 30 10 -1", socketEntry{1000, 123}, true},
		{"ipv4, other way round", "   4: 0100007F:0C38 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1001        0 124 1 0 20 4 30 10 -1", socketEntry{}, false},
		{"ipv6 v4-mapped", "   0: 0000000000000000FFFF00000100007F:9C40 0000000000000000FFFF00000100007F:0C38 01 00000000:00000000 00:00000000 00000000  1002        0 125 1", socketEntry{1002, 125}, true},
		{"time-wait, no inode", "   9: 0100007F:9C40 0100007F:0C38 06 00000000:00000000 03:00000F9E 00000000     0        0 0 3 0000000000000000", socketEntry{0, 0}, true},
		{"another port", "   5: 0100007F:9C41 0100007F:0C38 01 00000000:00000000 00:00000000 00000000  1000        0 126", socketEntry{}, false},
		{"bad uid", "   6: 0100007F:9C40 0100007F:0C38 01 00000000:00000000 00:00000000 00000000  x        0 127", socketEntry{}, false},
		{"bad inode", "   6: 0100007F:9C40 0100007F:0C38 01 00000000:00000000 00:00000000 00000000  1000        0 x1", socketEntry{}, false},
		{"no inode field", "   6: 0100007F:9C40 0100007F:0C38 01 00000000:00000000 00:00000000 00000000  1000        0", socketEntry{}, false},
		{"short", "   7: 0100007F:9C40 0100007F:0C38", socketEntry{}, false},
		{"bad hex", "   8: 0100007G:9C40 0100007F:0C38 01 00000000:00000000 00:00000000 00000000  1000 0 1", socketEntry{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, ok := procNetEntry(c.line, want)
			if e != c.want || ok != c.ok {
				t.Errorf("procNetEntry = %+v, %v, want %+v, %v", e, ok, c.want, c.ok)
			}
		})
	}
	// This process's own connection, found in the live table.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-accepted
	defer s.Close()
	uid, inode, err := peerSocket(s)
	if err != nil || uid != os.Getuid() || inode == 0 {
		t.Fatalf("peerSocket = %d, %d, %v, want %d and an inode", uid, inode, err, os.Getuid())
	}
	// This process holds the client end: it is the command's own when
	// it is the command, not when the command is its parent.
	if err := commandPeer(s, commandProcess(os.Getpid())); err != nil {
		t.Errorf("commandPeer(this process) = %v, want nil", err)
	}
	if err := commandPeer(s, commandProcess(os.Getppid())); err != nil {
		t.Errorf("commandPeer(this process's parent) = %v, want nil (this process is its descendant)", err)
	}
	if err := commandPeer(s, process{}); err == nil {
		t.Errorf("commandPeer(no command) = nil, want an error")
	}
	if _, _, err := peerSocket(fakeConn{}); err == nil {
		t.Errorf("peerSocket of a non-TCP connection: %v, want an error", err)
	}
}

// fakeConn is a connection that is not TCP.
type fakeConn struct{ net.Conn }

func (fakeConn) LocalAddr() net.Addr  { return &net.UnixAddr{Name: "a", Net: "unix"} }
func (fakeConn) RemoteAddr() net.Addr { return &net.UnixAddr{Name: "b", Net: "unix"} }

// TestRelayDescendantsOtherUser: the command itself, run as another user
// and sending no proxy credentials, is refused 407 by a Descendants
// relay (the socket must be this user's too), and the gateway sees
// nothing of it (needs root, to run the command as nobody).
func TestRelayDescendantsOtherUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) is not installed")
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	gw := startFakeGateway(t, nil)
	r := startRelay(t, Config{Gateway: &url.URL{Scheme: "http", Host: gw.ln.Addr().String()}, Token: token, Descendants: true})
	cmd := exec.CommandContext(t.Context(), setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--",
		"sh", "-c", `read x; exec "$@"`, "sh",
		curl, "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "connect=%{http_connect}", "--proxy", "http://"+r.Addr(), "https://api.example.test/")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.SetCommand(cmd.Process.Pid)
	_, _ = io.WriteString(in, "go\n")
	_ = in.Close()
	_ = cmd.Wait()
	if !strings.Contains(out.String(), "connect=407") {
		t.Errorf("another user's command: %s, want the relay's 407", out)
	}
	select {
	case g := <-gw.conns:
		g.Close()
		t.Fatal("the gateway got a connection")
	default:
	}
}

// TestCommandPeerNamesProcesses is the class of "a process id read at one
// moment is used at another, when it may name another process": the
// command reaped by credgate run while the relay still runs, or a
// descendant exited, and the id given to a process that is not the
// command's (another container sharing the PID namespace). A command or
// an ancestor of the socket's holder whose id now names a process started
// at another time admits nothing. Before, the relay knew the command by
// its id alone: the cases naming this process's id with another start
// time were admitted.
func TestCommandPeerNamesProcesses(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if s, err := ln.Accept(); err == nil {
			accepted <- s
		}
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-accepted
	defer s.Close()
	self, parent := commandProcess(os.Getpid()), commandProcess(os.Getppid())
	if self.start == 0 || parent.start == 0 {
		t.Fatalf("start times %d, %d: /proc/PID/stat not read", self.start, parent.start)
	}
	for _, tc := range []struct {
		name  string
		root  process
		admit bool
	}{
		{"the command holds the socket", self, true},
		{"a descendant holds it", parent, true},
		{"the command's id now names this process", process{pid: self.pid, start: self.start + 1}, false},
		{"the command's id now names this process's parent", process{pid: parent.pid, start: parent.start - 1}, false},
		{"no command", process{}, false},
	} {
		err := commandPeer(s, tc.root)
		if (err == nil) != tc.admit {
			t.Errorf("%s: commandPeer = %v, admit %v", tc.name, err, tc.admit)
		}
	}
	// A tree read before an ancestor of the holder exited and its id
	// passed on: the holder's parent as read then was another process.
	st, ok := readStat(os.Getpid())
	if !ok {
		t.Fatal("readStat(self) failed")
	}
	pst, ok := readStat(os.Getppid())
	if !ok {
		t.Fatal("readStat(parent) failed")
	}
	grand := process{pid: pst.ppid}
	if gst, ok := readStat(pst.ppid); ok {
		grand.start = gst.start
	}
	for _, tc := range []struct {
		name string
		tree map[int]stat
		ok   bool
	}{
		{"unchanged", map[int]stat{os.Getpid(): st, os.Getppid(): pst}, true},
		{"the parent replaced", map[int]stat{os.Getpid(): st, os.Getppid(): {ppid: pst.ppid, start: pst.start + 1}}, false},
		{"the holder replaced", map[int]stat{os.Getpid(): {ppid: st.ppid, start: st.start - 1}, os.Getppid(): pst}, false},
		{"the holder reparented", map[int]stat{os.Getpid(): {ppid: pst.ppid, start: st.start}, os.Getppid(): pst}, false},
		{"the parent not read", map[int]stat{os.Getpid(): st}, false},
	} {
		if err := stillDescends(os.Getpid(), tc.tree, grand); (err == nil) != tc.ok {
			t.Errorf("%s: stillDescends = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// TestParseStat: /proc/PID/stat's parent and start time, with a command
// name holding spaces and parentheses.
func TestParseStat(t *testing.T) {
	rest := " S 42 7 7 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100"
	for _, tc := range []struct {
		in   string
		want stat
		ok   bool
	}{
		{"123 (sleep)" + rest, stat{ppid: 42, start: 987654}, true},
		{"123 (a) b) (c)" + rest, stat{ppid: 42, start: 987654}, true},
		{"123 (x y)" + rest, stat{ppid: 42, start: 987654}, true},
		{"123 (sleep) S 42 7", stat{}, false},
		{"123 sleep S 42", stat{}, false},
		{"123 (sleep) S x" + rest[4:], stat{}, false},
	} {
		got, ok := parseStat([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseStat(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
