package gateway

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/credgate/credgate/secret"
	"github.com/credgate/credgate/transform"
)

// frame builds a client frame (masked with key when key is not nil).
func frame(b0 byte, key []byte, payload string) []byte {
	p := []byte(payload)
	maskBytes(p, key)
	return append(appendWSHeader(nil, b0, key != nil, key, len(p)), p...)
}

// TestWSFrameReader: text frames are substituted and re-framed with their
// new length and the same mask; binary and control frames, and the
// continuation of a binary message, pass as they came; a text message's
// continuation frames are substituted too; RSV bits and a tripwire end
// the stream.
func TestWSFrameReader(t *testing.T) {
	// Longer than 125 bytes once substituted: the header grows.
	val := `v"al/ue-longer-than-the-placeholder-` + string(bytes.Repeat([]byte("x"), 100))
	sub, err := transform.NewSubstituter(
		[]transform.Binding{{Name: "b", Placeholder: "CREDGATE_PH_ws_test", Value: secret.New(val)}},
		[]transform.Tripwire{{Name: "other", Placeholder: "CREDGATE_PH_other"}}, transform.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key := []byte{1, 2, 3, 4}
	tests := []struct {
		name    string
		in, out []byte
		err     error
	}{
		{"text raw", frame(0x81, key, "a CREDGATE_PH_ws_test b"), frame(0x81, key, "a "+val+" b"), nil},
		{"text json, length grows past 125", frame(0x81, key, `{"token":"CREDGATE_PH_ws_test"}`), frame(0x81, key, `{"token":"v\"al/ue-longer-than-the-placeholder-`+string(bytes.Repeat([]byte("x"), 100))+`"}`), nil},
		{"unmasked", frame(0x81, nil, "CREDGATE_PH_ws_test"), frame(0x81, nil, val), nil},
		{"binary untouched", frame(0x82, key, "CREDGATE_PH_ws_test"), frame(0x82, key, "CREDGATE_PH_ws_test"), nil},
		{"ping untouched", frame(0x89, key, "CREDGATE_PH_ws_test"), frame(0x89, key, "CREDGATE_PH_ws_test"), nil},
		{"fragmented text", append(frame(0x01, key, "x CREDGATE_PH_ws_test"), frame(0x80, key, " CREDGATE_PH_ws_test")...),
			append(frame(0x01, key, "x "+val), frame(0x80, key, " "+val)...), nil},
		{"fragmented binary", append(frame(0x02, key, "CREDGATE_PH_ws_test"), frame(0x80, key, "CREDGATE_PH_ws_test")...),
			append(frame(0x02, key, "CREDGATE_PH_ws_test"), frame(0x80, key, "CREDGATE_PH_ws_test")...), nil},
		{"rsv1 (compressed)", frame(0xc1, key, "abc"), nil, errWSFrame},
		{"tripwire", append(frame(0x81, key, "ok"), frame(0x81, key, "CREDGATE_PH_other")...), frame(0x81, key, "ok"), transform.ErrPlaceholderMisuse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var misuse int
			r := &wsFrameReader{src: bytes.NewReader(tc.in), sub: sub, rep: &transform.Report{},
				onMisuse: func(*transform.MisuseError) { misuse++ }}
			got, err := io.ReadAll(io.Reader(r))
			if !bytes.Equal(got, tc.out) {
				t.Errorf("out\n%q\nwant\n%q", got, tc.out)
			}
			if tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
				t.Errorf("error %v, want %v", err, tc.err)
			}
			if want := map[bool]int{true: 1}[errors.Is(tc.err, transform.ErrPlaceholderMisuse)]; misuse != want {
				t.Errorf("misuse reported %d times, want %d", misuse, want)
			}
		})
	}
}
