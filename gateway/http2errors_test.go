package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestHTTP2ResetPathsCounted: a stream whose :path net/http cannot parse
// (url.ParseRequestURI) is reset by Go's HTTP/2 server (PROTOCOL_ERROR)
// before the gateway's handler runs. Nothing reaches the origin, each
// one is audited http2_refused (no path named) and counted in
// credgate_http2_errors_total, and the connection goes on serving. A
// :path with a control byte is reset earlier, by the framer, which calls
// no CountError: the test pins that it is audited but not counted
// (docs/policy.md says so). The frames are written by hand: Go's client
// would retry a reset stream.
func TestHTTP2ResetPathsCounted(t *testing.T) {
	tg := startCanonGateway(t)
	h := h2RawTunnel(t, tg, apiHost)
	send := func(stream uint32, path string) {
		t.Helper()
		h.headers(stream, [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", apiHost}, {":path", path}}, true)
	}
	// Each bad path, then a good request on the same connection. A
	// control byte (DEL here) is refused by the HTTP/2 framer, which
	// resets the stream without calling CountError: not counted either.
	bad := []string{"/v1/%x", "/v1/a%zzb", "/v1/%", "/v1/a\x7fb"}
	const counted = 3 // the first three
	before := len(tg.origin.all())
	for i, p := range bad {
		send(uint32(1+2*i), p)
	}
	good := uint32(1 + 2*len(bad))
	send(good, "/v1/ok")
	streams := []uint32{good}
	for i := range bad {
		streams = append(streams, uint32(1+2*i))
	}
	got := h.read(streams...)
	if a := got[good]; a.Reset || a.Status != "200" {
		t.Errorf("the good request: reset %v, status %q; want 200", a.Reset, a.Status)
	}
	for i, p := range bad {
		if a := got[uint32(1+2*i)]; !a.Reset || a.ErrCode != http2.ErrCodeProtocol {
			t.Errorf("%q: reset %v %v (status %q), want PROTOCOL_ERROR", p, a.Reset, a.ErrCode, a.Status)
		}
	}
	if got := len(tg.origin.all()) - before; got != 1 {
		t.Errorf("the origin received %d requests, want 1 (the good one)", got)
	}
	want := fmt.Sprintf(`credgate_http2_errors_total{type="stream_PROTOCOL_ERROR_bad_path"} %d`, counted)
	waitFor(t, 5*time.Second, want, func() bool {
		resp, err := http.Get("http://" + tg.gw.AdminAddr().String() + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), want)
	})
	for _, p := range bad {
		if strings.Contains(tg.audit.String(), p) {
			t.Errorf("an audit line names %q: the server refused it before parsing; no line may name its bytes", p)
		}
	}
	waitFor(t, 5*time.Second, "one http2_refused line per bad path", func() bool {
		return strings.Count(tg.audit.String(), `"code":"`+codeHTTP2Refused+`"`) == len(bad)
	})
}

// TestHTTP2RefusedBeforeHandler pins the other streams Go's HTTP/2 server
// (Go 1.26) refuses itself, before the gateway's handler runs, so that
// docs/policy.md stays true: extended CONNECT (RFC 8441; Go offers it
// only under GODEBUG=http2xconnect=1, which credgate does not set) and a
// :scheme other than http or https are reset (PROTOCOL_ERROR) and
// counted; connection-specific fields (Connection, TE other than
// trailers) are answered 400 by net/http, without the gateway's reason
// header. None is forwarded; the resets are audited http2_refused
// (TestEveryHTTP2RefusalAuditedOnce), the 400s are not.
func TestHTTP2RefusedBeforeHandler(t *testing.T) {
	tg := startCanonGateway(t)
	h := h2RawTunnel(t, tg, apiHost)
	base := func(path string, extra ...[2]string) [][2]string {
		return append([][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", apiHost}, {":path", path}}, extra...)
	}
	cases := []struct {
		fields  [][2]string
		reset   bool
		status  string
		counted string
	}{
		{fields: [][2]string{{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"}, {":authority", apiHost}, {":path", "/v1/xconnect"}}, reset: true, counted: "stream_PROTOCOL_ERROR_bad_connect"},
		{fields: [][2]string{{":method", "GET"}, {":scheme", "ftp"}, {":authority", apiHost}, {":path", "/v1/ftp"}}, reset: true, counted: "stream_PROTOCOL_ERROR_bad_path_method"},
		{fields: base("/v1/connection", [2]string{"connection", "close"}), status: "400"},
		{fields: base("/v1/te", [2]string{"te", "gzip"}), status: "400"},
	}
	before := len(tg.origin.all())
	var streams []uint32
	for i, tc := range cases {
		id := uint32(1 + 2*i)
		h.headers(id, tc.fields, true)
		streams = append(streams, id)
	}
	good := uint32(1 + 2*len(cases))
	h.headers(good, base("/v1/ok"), true)
	got := h.read(append(streams, good)...)
	for i, tc := range cases {
		a := got[streams[i]]
		if a.Reset != tc.reset || a.Status != tc.status || a.Field(ReasonHeader) != "" {
			t.Errorf("%v: reset %v, status %q, reason %q; want reset %v, status %q from net/http", tc.fields, a.Reset, a.Status, a.Field(ReasonHeader), tc.reset, tc.status)
		}
	}
	if a := got[good]; a.Status != "200" {
		t.Errorf("the good request: %q, want 200", a.Status)
	}
	if n := len(tg.origin.all()) - before; n != 1 {
		t.Errorf("the origin received %d requests, want 1 (the good one)", n)
	}
	waitFor(t, 5*time.Second, "the good request's audit line", func() bool { return strings.Contains(tg.audit.String(), `"path":"/v1/ok"`) })
	for _, tc := range cases {
		for _, f := range tc.fields {
			if f[0] == ":path" && strings.Contains(tg.audit.String(), `"path":"`+f[1]+`"`) {
				t.Errorf("an audit line names %q: the premise (refused before the handler, no line names its path) changed; update docs/policy.md", f[1])
			}
		}
	}
	for _, tc := range cases {
		if tc.counted == "" {
			continue
		}
		want := fmt.Sprintf(`credgate_http2_errors_total{type=%q} 1`, tc.counted)
		waitFor(t, 5*time.Second, want, func() bool {
			resp, err := http.Get("http://" + tg.gw.AdminAddr().String() + "/metrics")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return strings.Contains(string(b), want)
		})
	}
}
