package tickets

import (
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/credgate/credgate/internal/testpki"
)

// handshake connects a client with cache to a server with srv over an
// in-memory pipe, reads the server's first byte (so that the session
// ticket that precedes it is taken) and reports whether it resumed.
func handshake(t *testing.T, srv *tls.Config, cli *tls.Config) bool {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	errc := make(chan error, 1)
	go func() {
		s := tls.Server(a, srv)
		if err := s.Handshake(); err != nil {
			errc <- err
			return
		}
		_, err := s.Write([]byte{1})
		errc <- err
	}()
	c := tls.Client(b, cli)
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return c.ConnectionState().DidResume
}

func TestRotationKeepsThePreviousKeyForOneRotation(t *testing.T) {
	ca, err := testpki.NewAuthority("tickets test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf("gw.test")
	if err != nil {
		t.Fatal(err)
	}
	srv := &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS13}
	keys, err := New(1)
	if err != nil {
		t.Fatal(err)
	}
	keys.Add(srv)
	cli := &tls.Config{ServerName: "gw.test", RootCAs: ca.Pool(), ClientSessionCache: tls.NewLRUClientSessionCache(4)}

	if handshake(t, srv, cli) {
		t.Fatal("first handshake resumed")
	}
	if !handshake(t, srv, cli) {
		t.Fatal("second handshake did not resume")
	}
	// The resumed handshake got a new ticket under the same key; one
	// rotation later it still resumes (previous key kept)...
	if err := keys.Rotate(); err != nil {
		t.Fatal(err)
	}
	if !handshake(t, srv, cli) {
		t.Error("a ticket of the previous key did not resume")
	}
	// ...and issues a ticket under the new key. Two rotations later that
	// ticket's key is gone: a full handshake.
	for range 2 {
		if err := keys.Rotate(); err != nil {
			t.Fatal(err)
		}
	}
	if handshake(t, srv, cli) {
		t.Error("a ticket two rotations old resumed")
	}
	// Reset forgets every ticket at once.
	if !handshake(t, srv, cli) {
		t.Fatal("a fresh ticket did not resume")
	}
	if err := keys.Reset(); err != nil {
		t.Fatal(err)
	}
	if handshake(t, srv, cli) {
		t.Error("a ticket resumed after Reset")
	}
	// Another process (other keys) never resumes this one's tickets.
	other, err := New(1)
	if err != nil {
		t.Fatal(err)
	}
	srv2 := srv.Clone()
	other.Add(srv2)
	if handshake(t, srv2, cli) {
		t.Error("another key set resumed a ticket")
	}
}

func TestNewRefusesABadInterval(t *testing.T) {
	if _, err := New(0); err == nil {
		t.Error("New(0) succeeded")
	}
}
