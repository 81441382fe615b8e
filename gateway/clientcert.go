package gateway

import (
	"container/list"
	"crypto/sha256"
	"crypto/tls"
	"net/http"
	"sync"
)

// maxClientTransports bounds the upstream transports kept per client
// certificate; the least recently used is closed first.
const maxClientTransports = 256

// clientCertSessions bounds the TLS sessions kept per client certificate.
const clientCertSessions = 16

// clientTransports holds one upstream transport per TLS client
// certificate (the tlsclient injector), so that connections that present
// a certificate are pooled with that certificate only: two workloads never
// share a client-authenticated connection.
type clientTransports struct {
	base *http.Transport

	mu    sync.Mutex
	lru   list.List // of *clientTransport, front = most recent
	byKey map[[32]byte]*list.Element
}

type clientTransport struct {
	key [32]byte
	t   *http.Transport
}

func newClientTransports(base *http.Transport) *clientTransports {
	return &clientTransports{base: base, byKey: map[[32]byte]*list.Element{}}
}

// get returns the transport presenting cert.
func (c *clientTransports) get(cert *tls.Certificate) *http.Transport {
	key := sha256.Sum256(cert.Certificate[0])
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		c.lru.MoveToFront(el)
		return el.Value.(*clientTransport).t
	}
	t := c.base.Clone()
	t.TLSClientConfig.Certificates = []tls.Certificate{*cert}
	if t.TLSClientConfig.ClientSessionCache != nil {
		// A session cache of its own: crypto/tls keys sessions by server
		// name only, and a session resumed carries the identity of the
		// handshake that made it, so a shared cache could resume another
		// certificate's (or no certificate's) session.
		t.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(clientCertSessions)
	}
	c.byKey[key] = c.lru.PushFront(&clientTransport{key: key, t: t})
	for c.lru.Len() > maxClientTransports {
		old := c.lru.Back()
		c.lru.Remove(old)
		ct := old.Value.(*clientTransport)
		delete(c.byKey, ct.key)
		ct.t.CloseIdleConnections()
	}
	return t
}

// closeIdle closes the idle connections of every transport.
func (c *clientTransports) closeIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.lru.Front(); el != nil; el = el.Next() {
		el.Value.(*clientTransport).t.CloseIdleConnections()
	}
}
