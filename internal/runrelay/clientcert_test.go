package runrelay

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credgate/credgate/internal/poll"
	"github.com/credgate/credgate/internal/testpki"
)

// syncBuffer is a log the relay writes from its goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// certGateway is a TLS gateway that asks for a client certificate,
// answers each CONNECT with status and sends the common name of the
// client certificate each connection presented ("" for none) on names.
func certGateway(t *testing.T, ca *testpki.Authority, status int) (addr string, names chan string) {
	t.Helper()
	leaf, err := ca.Leaf("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf}, ClientAuth: tls.RequestClientCert})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	names = make(chan string, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				name := ""
				if pc := c.(*tls.Conn).ConnectionState().PeerCertificates; len(pc) > 0 {
					name = pc[0].Subject.CommonName
				}
				names <- name
				fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status, http.StatusText(status))
			}()
		}
	}()
	return ln.Addr().String(), names
}

// connectThrough sends one CONNECT through the relay with its secret and
// returns the status of the answer.
func connectThrough(t *testing.T, r *Relay) int {
	t.Helper()
	pass, _ := r.URL().User.Password()
	conn, br := dialRelay(t, r)
	defer conn.Close()
	io.WriteString(conn, "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nProxy-Authorization: "+basic(User, pass)+"\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

func writeClientPair(t *testing.T, ca *testpki.Authority, name, certFile, keyFile string) {
	t.Helper()
	c, err := ca.ClientLeaf(name)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := testpki.PEM(c)
	if err != nil {
		t.Fatal(err)
	}
	// The key first, then the certificate: a reload between the two
	// sees a pair that does not match, which keeps the last good one.
	for _, f := range []struct {
		path string
		data []byte
	}{{keyFile, keyPEM}, {certFile, certPEM}} {
		tmp := f.path + ".tmp"
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRelayClientCert: the relay presents the client certificate of its
// files to an https gateway that asks for one, and after the files
// change, the new one (rotation) without a restart; a pair that does not
// load keeps the last good one. Without a certificate, a gateway that
// asked for one and refused the request gets a line naming the flags.
func TestRelayClientCert(t *testing.T) {
	ca, err := testpki.NewAuthority("relay client cert test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	writeClientPair(t, ca, "first", certFile, keyFile)

	t.Run("presented and reloaded", func(t *testing.T) {
		addr, names := certGateway(t, ca, http.StatusOK)
		log := &syncBuffer{}
		r := startRelay(t, Config{Gateway: &url.URL{Scheme: "https", Host: addr}, Roots: ca.Pool(), ClientCert: certFile, ClientKey: keyFile, ReloadInterval: 5 * time.Millisecond, Log: log})
		if st := connectThrough(t, r); st != http.StatusOK {
			t.Fatalf("CONNECT: %d", st)
		}
		if got := <-names; got != "first" {
			t.Fatalf("the gateway saw client certificate %q, want first", got)
		}
		writeClientPair(t, ca, "second", certFile, keyFile)
		deadline := time.Now().Add(10 * time.Second)
		for {
			connectThrough(t, r)
			if got := <-names; got == "second" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the rotated certificate was not presented within 10s")
			}
		}
		// A broken pair: logged, the last good one stays.
		if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
			t.Fatal(err)
		}
		poll.True(t, 10*time.Second, "the reload failure logged", func() bool {
			return strings.Contains(log.String(), "relay client certificate")
		})
		connectThrough(t, r)
		if got := <-names; got != "second" {
			t.Errorf("after a broken pair the gateway saw %q, want the last good one", got)
		}
	})
	t.Run("none, refused", func(t *testing.T) {
		addr, names := certGateway(t, ca, http.StatusForbidden)
		log := &syncBuffer{}
		r := startRelay(t, Config{Gateway: &url.URL{Scheme: "https", Host: addr}, Roots: ca.Pool(), Token: token, Log: log})
		if st := connectThrough(t, r); st != http.StatusForbidden {
			t.Fatalf("CONNECT: %d, want the gateway's 403 passed on", st)
		}
		if got := <-names; got != "" {
			t.Fatalf("the gateway saw client certificate %q, want none", got)
		}
		r.Close()
		if !strings.Contains(log.String(), "--gateway-cert") || strings.Contains(log.String(), token) {
			t.Errorf("log %q, want the flag named and no token", log.String())
		}
	})
	t.Run("one, refused: no hint", func(t *testing.T) {
		addr, names := certGateway(t, ca, http.StatusForbidden)
		log := &syncBuffer{}
		certFile, keyFile := filepath.Join(dir, "third.pem"), filepath.Join(dir, "third-key.pem")
		writeClientPair(t, ca, "third", certFile, keyFile)
		r := startRelay(t, Config{Gateway: &url.URL{Scheme: "https", Host: addr}, Roots: ca.Pool(), ClientCert: certFile, ClientKey: keyFile, Log: log})
		connectThrough(t, r)
		<-names
		r.Close()
		if strings.Contains(log.String(), "--gateway-cert") {
			t.Errorf("log %q names the flag although a certificate was presented", log.String())
		}
	})
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"certificate without key", Config{Gateway: &url.URL{Scheme: "https", Host: "127.0.0.1:9"}, ClientCert: certFile}, "both"},
		{"plain gateway", Config{Gateway: &url.URL{Scheme: "http", Host: "127.0.0.1:9"}, ClientCert: certFile, ClientKey: keyFile}, "https:// gateway"},
		{"missing file", Config{Gateway: &url.URL{Scheme: "https", Host: "127.0.0.1:9"}, ClientCert: filepath.Join(dir, "nope.pem"), ClientKey: keyFile}, "nope.pem"},
		{"not a pair", Config{Gateway: &url.URL{Scheme: "https", Host: "127.0.0.1:9"}, ClientCert: certFile, ClientKey: certFile}, "relay client certificate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := Start(t.Context(), c.cfg)
			if err == nil {
				r.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("%v, want %q", err, c.want)
			}
		})
	}
}
