package gateway

import (
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// hopHeaders are the hop-by-hop fields of RFC 9110 §7.6.1 (and the
// obsolete ones proxies still see): never forwarded in either direction.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopHeaders deletes the hop-by-hop fields and those the Connection
// field names.
func removeHopHeaders(h http.Header) {
	for _, f := range h["Connection"] {
		for _, name := range strings.Split(f, ",") {
			if name = textproto.TrimString(name); name != "" {
				delete(h, textproto.CanonicalMIMEHeaderKey(name))
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k) // canonical already
	}
}

// forward sends the outbound request r (built by handle: destination,
// gateway headers removed, credential injected, reqState in its context)
// upstream and relays the response to w. It does what
// httputil.ReverseProxy does for a request that is not a protocol
// upgrade — hop-by-hop fields removed both ways, TE: trailers kept,
// trailers relayed, streaming responses flushed as they come, a response
// cut short by the upstream aborts the client's response instead of
// ending it cleanly — with less copying on every request. Upgrade
// requests (WebSocket) still go through the ReverseProxy, which relays
// the 101 and both directions; 1xx informational responses are not
// relayed here.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request) {
	if _, up := r.Header["Upgrade"]; up {
		g.upgradeProxy.ServeHTTP(w, r)
		return
	}
	keepTE := httpguts.HeaderValuesContainsToken(r.Header["Te"], "trailers")
	removeHopHeaders(r.Header)
	if keepTE {
		r.Header["Te"] = []string{"trailers"}
	}
	if _, ok := r.Header["User-Agent"]; !ok {
		r.Header["User-Agent"] = []string{""} // not Go's default
	}
	if strings.Contains(r.URL.RawQuery, ";") {
		// As ReverseProxy: a query the upstream might split differently
		// from the policy's view is re-encoded without the ';' pairs.
		v, _ := url.ParseQuery(r.URL.RawQuery)
		u := *r.URL
		u.RawQuery = v.Encode()
		r.URL = &u
	}
	r.RequestURI = ""
	r.Close = false
	if r.ContentLength == 0 && r.Body != nil {
		_ = r.Body.Close()
		r.Body = nil
	}

	resp, err := g.upstream.RoundTrip(r)
	if err != nil {
		g.upstreamError(w, r, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// Only an upgrade request may be answered 101.
		g.upstreamError(w, r, errors.New("upstream switched protocols without an upgrade request"))
		return
	}
	removeHopHeaders(resp.Header)
	_ = g.upstreamResponse(resp)

	dst := w.Header()
	for k, vv := range resp.Header {
		dst[k] = vv
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		dst["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	w.WriteHeader(resp.StatusCode)

	// Server-sent events and bodies of unknown length are flushed as they
	// come (ReverseProxy's flush interval -1); the headers go at once.
	stream := resp.ContentLength == -1 || isEventStream(resp.Header.Get("Content-Type"))
	rc := http.NewResponseController(w)
	if stream {
		_ = rc.Flush()
	}
	if err := g.copyBody(w, rc, resp.Body, stream); err != nil {
		// The body broke off: the client must not see a complete
		// response (a clean last chunk would make a truncated body look
		// whole). The server closes the connection.
		if st, _ := r.Context().Value(stateKey).(*reqState); st != nil {
			st.abortCode = codeUpstreamError
			if errors.Is(err, errClientWrite) {
				st.abortCode = codeRequestBodyAborted
			}
		}
		panic(http.ErrAbortHandler)
	}
	_ = resp.Body.Close() // fills resp.Trailer
	if len(resp.Trailer) == 0 {
		return
	}
	if len(resp.Trailer) == announced {
		for k, vv := range resp.Trailer {
			dst[k] = vv
		}
		return
	}
	for k, vv := range resp.Trailer {
		dst[http.TrailerPrefix+k] = vv
	}
}

// errClientWrite marks a failed write to the client.
var errClientWrite = errors.New("gateway: writing the response to the client failed")

// copyBody copies the upstream body to the client with a pooled buffer,
// flushing after every write when stream is set. A read error other than
// the end of the body is returned; so is a failed write.
func (g *Gateway) copyBody(w io.Writer, rc *http.ResponseController, body io.Reader, stream bool) error {
	buf := g.buffers.Get()
	defer g.buffers.Put(buf)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return errClientWrite
			}
			if stream {
				_ = rc.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// isEventStream reports whether a Content-Type is text/event-stream.
func isEventStream(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.EqualFold(strings.TrimSpace(ct), "text/event-stream")
}
