//lint:file-ignore SA1019 x/net/http2.Server: see h2refusal.go

package gateway

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2LibraryClasses are the http2_error classes the x/net/http2 server in
// use can name (CountError), read from its source in the module cache:
// sc.countError("name", ConnectionError(ErrCodeX) or streamError(id,
// ErrCodeX)) is "conn_X_name" or "stream_X_name"; the httpcommon
// InvalidReason values are "stream_PROTOCOL_ERROR_reason"; the framer's
// and the ping timer's names are as written.
func h2LibraryClasses(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "golang.org/x/net").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Skipf("golang.org/x/net's source is not in the module cache (go list: %v)", err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Skipf("reading x/net's source: %v", err)
		}
		return string(b)
	}
	server, frame, request := read("http2/server.go"), read("http2/frame.go"), read("internal/httpcommon/request.go")
	codes := map[string]http2.ErrCode{}
	for c := http2.ErrCodeNo; c <= http2.ErrCodeHTTP11Required; c++ {
		// ErrCodeFlowControl's String is FLOW_CONTROL_ERROR: the
		// identifier is its words, capitalised.
		var id strings.Builder
		for w := range strings.SplitSeq(strings.TrimSuffix(c.String(), "_ERROR"), "_") {
			id.WriteString(w[:1] + strings.ToLower(w[1:]))
		}
		codes[id.String()] = c
	}
	codes["HTTP11Required"] = http2.ErrCodeHTTP11Required
	var classes []string
	calls := regexp.MustCompile(`sc\.countError\(`).FindAllStringIndex(server, -1)
	named := regexp.MustCompile(`sc\.countError\("([a-z0-9_]+)",\s*(ConnectionError|streamError)\((?:[^,]*,\s*)?ErrCode(\w+)\)\)`).FindAllStringSubmatch(server, -1)
	const reasonCall = `sc.countError(res.InvalidReason, streamError(st.id, ErrCodeProtocol))`
	if len(calls) != len(named)+strings.Count(server, reasonCall) {
		t.Fatalf("x/net/http2/server.go has %d sc.countError calls, %d of a form this test reads: read the others and extend it", len(calls), len(named)+strings.Count(server, reasonCall))
	}
	for _, m := range named {
		code, ok := codes[m[3]]
		if !ok {
			t.Fatalf("countError(%q): unknown ErrCode%s", m[1], m[3])
		}
		scope := "stream_"
		if m[2] == "ConnectionError" {
			scope = "conn_"
		}
		classes = append(classes, scope+code.String()+"_"+m[1])
	}
	for _, m := range regexp.MustCompile(`InvalidReason:\s*"([a-z0-9_]+)"`).FindAllStringSubmatch(request, -1) {
		classes = append(classes, "stream_PROTOCOL_ERROR_"+m[1])
	}
	for _, m := range regexp.MustCompile(`countError\("([a-z0-9_]+)"\)`).FindAllStringSubmatch(frame, -1) {
		classes = append(classes, m[1])
	}
	for _, m := range regexp.MustCompile(`\bf\("([a-z0-9_]+)"\)`).FindAllStringSubmatch(server, -1) {
		classes = append(classes, m[1])
	}
	if len(classes) < 40 {
		t.Fatalf("only %d classes read from %s: has the source changed form?", len(classes), dir)
	}
	return classes
}

// TestHTTP2ErrorClassesDocumented: every http2_error class the HTTP/2
// server in use can name (h2LibraryClasses, read from its source), the
// gateway's own (h2Mirror's, conn_closed) and the frame-code classes are
// in docs/audit-and-metrics.md's table: an x/net upgrade that adds one
// fails here until it is documented.
func TestHTTP2ErrorClassesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/audit-and-metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	classes := append(h2LibraryClasses(t), h2ClassHeaderListTooLong, h2ClassConnectionField, h2ClassTE, "conn_closed")
	missing := 0
	for _, c := range classes {
		if !strings.Contains(string(doc), "`"+c+"`") {
			missing++
			t.Errorf("http2_error class %s is not in docs/audit-and-metrics.md", c)
		}
	}
	t.Logf("%d classes, %d not documented", len(classes), missing)
}

// TestH2MirrorLimits: the limits h2Mirror decodes header blocks with are
// those the server advertises in its SETTINGS (else the two decoders
// would part).
func TestH2MirrorLimits(t *testing.T) {
	tg := startGateway(t)
	table, list := h2MirrorLimits(&http2.Server{}, tg.gw.mitmSrv)
	h := h2RawTunnel(t, tg, apiHost)
	f, err := h.fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	if v, ok := sf.Value(http2.SettingMaxHeaderListSize); !ok || v != list {
		t.Errorf("SETTINGS_MAX_HEADER_LIST_SIZE %d (%v), h2Mirror's %d", v, ok, list)
	}
	if v, ok := sf.Value(http2.SettingHeaderTableSize); !ok || v != table {
		t.Errorf("SETTINGS_HEADER_TABLE_SIZE %d (%v), h2Mirror's %d", v, ok, table)
	}
}

// TestHTTP2OwnAnswerOnlyForBadFields: fields next to those the server
// answers itself (TE: trailers, an empty TE, a field whose name holds
// "connection") are served by the gateway, with no refusal line: the
// mirror names no stream the gateway serves.
func TestHTTP2OwnAnswerOnlyForBadFields(t *testing.T) {
	tg := startGateway(t)
	h := h2RawTunnel(t, tg, apiHost)
	extra := [][2]string{{"te", "trailers"}, {"te", ""}, {"x-connection", "close"}, {"upgrade-insecure-requests", "1"}}
	for i, e := range extra {
		h.headers(uint32(1+2*i), reqFields("/v1/fine", e), true)
	}
	var ids []uint32
	for i := range extra {
		ids = append(ids, uint32(1+2*i))
	}
	for id, a := range h.read(ids...) {
		if a.Reset || a.Status != "200" {
			t.Errorf("stream %d: reset %v, status %q; want 200", id, a.Reset, a.Status)
		}
	}
	_ = h.c.Close()
	lines := h2LinesOf(t, tg, "sentinel-fine", func() {})
	for _, ev := range lines {
		if ev["code"] == codeHTTP2Refused {
			t.Errorf("a refusal line: %v", ev)
		}
	}
}

// BenchmarkH2MirrorFeed is h2Mirror's cost per request (one op): one
// HEADERS frame of a typical request (8 fields, a bearer token, all
// literals: no dynamic table entry reused) fed as the server reads it,
// the block decoded a second time.
func BenchmarkH2MirrorFeed(b *testing.B) {
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	fields := [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "api.example.com"}, {":path", "/v1/chat/completions"},
		{"content-type", "application/json"}, {"accept", "*/*"}, {"user-agent", "client/1.0"}, {"authorization", "Bearer placeholder-0123456789abcdef"}}
	var frames [][]byte
	for i := range 64 {
		var blk bytes.Buffer
		enc := hpack.NewEncoder(&blk)
		for _, f := range fields {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		buf.Reset()
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(1 + 2*i), BlockFragment: blk.Bytes(), EndStream: true, EndHeaders: true})
		frames = append(frames, bytes.Clone(buf.Bytes()))
	}
	answered := func(uint32, string) { b.Fatal("a stream named") }
	m := newH2Mirror(&http2.Server{}, &http.Server{MaxHeaderBytes: 64 << 10})
	m.feed([]byte(http2.ClientPreface), answered)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.feed(frames[i%len(frames)], answered)
		i++
	}
}

// TestH2MirrorUnfinished: the mirror says a request was begun and left
// unfinished (audited client_aborted when the client ends its side
// there) for part of the connection preface and part of the header block
// opening a new stream, and not for nothing sent, a whole preface, a
// whole request, a partial frame of another kind, or trailers of a
// stream already open (that stream's handler audits it).
func TestH2MirrorUnfinished(t *testing.T) {
	var enc bytes.Buffer
	he := hpack.NewEncoder(&enc)
	for _, f := range reqFields("/v1/x") {
		_ = he.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	block := append([]byte(nil), enc.Bytes()...)
	frame := func(typ http2.FrameType, flags http2.Flags, id uint32, payload []byte) []byte {
		var b bytes.Buffer
		fr := http2.NewFramer(&b, nil)
		_ = fr.WriteRawFrame(typ, flags, id, payload)
		return b.Bytes()
	}
	settings := frame(http2.FrameSettings, 0, 0, nil)
	start := http2.ClientPreface + string(settings)
	whole := frame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, 1, block)
	for _, tc := range []struct {
		name string
		sent string
		want bool
	}{
		{"nothing", "", false},
		{"part of the preface", http2.ClientPreface[:7], true},
		{"the preface", http2.ClientPreface, false},
		{"the preface and SETTINGS", start, false},
		{"part of a frame header", start + string(whole[:4]), false},
		{"a HEADERS frame header", start + string(whole[:9]), true},
		{"part of a HEADERS payload", start + string(whole[:12]), true},
		{"HEADERS without END_HEADERS", start + string(frame(http2.FrameHeaders, 0, 1, block)), true},
		{"HEADERS and CONTINUATION without END_HEADERS", start + string(frame(http2.FrameHeaders, 0, 1, block[:3])) + string(frame(http2.FrameContinuation, 0, 1, block[3:])), true},
		{"HEADERS and CONTINUATION with END_HEADERS", start + string(frame(http2.FrameHeaders, 0, 1, block[:3])) + string(frame(http2.FrameContinuation, http2.FlagContinuationEndHeaders, 1, block[3:])), false},
		{"a whole request", start + string(whole), false},
		{"part of a PING", start + string(frame(http2.FramePing, 0, 0, make([]byte, 8))[:12]), false},
		{"part of DATA of an open stream", start + string(frame(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 1, block)) + string(frame(http2.FrameData, 0, 1, []byte("abcdef"))[:11]), false},
		{"trailers of an open stream without END_HEADERS", start + string(frame(http2.FrameHeaders, http2.FlagHeadersEndHeaders, 1, block)) + string(frame(http2.FrameHeaders, http2.FlagHeadersEndStream, 1, []byte{0x40, 1, 'x', 1, 'y'})), false},
		{"not HTTP/2", "GET / HTTP/1.1\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Byte by byte and whole: the answer does not depend on how
			// the reads split the bytes.
			for _, step := range []int{1, len(tc.sent) + 1} {
				m := newH2Mirror(&http2.Server{}, &http.Server{})
				for p := tc.sent; p != ""; {
					k := min(step, len(p))
					m.feed([]byte(p[:k]), func(uint32, string) {})
					p = p[k:]
				}
				if got := m.unfinished(); got != tc.want {
					t.Errorf("fed %d bytes at a time: unfinished %v, want %v", step, got, tc.want)
				}
			}
		})
	}
}
