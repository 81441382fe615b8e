package gateway

import (
	"encoding/base64"
	"strings"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/httpclient"
)

// redactCaller returns err with the secrets the caller presented redacted
// from its text, in every form a response scrubber knows and every piece
// of 8 bytes or more (httpclient.RedactValues): the Proxy-Authorization
// header (whole, its credential after the scheme, and a Basic header's
// decoded user and password) and the token of every verified factor.
// It is for errors a plugin wrote (a provider's Fetch, which sees the
// caller's verified tokens and may present them onward; a verifier's
// Verify, which reads Proxy-Authorization) before they are logged: their
// contract is to quote no value, and one that does (echoing an endpoint's
// answer, say) must still not put the client's token in the log.
func redactCaller(err error, proxyAuth string, wl identity.Workload) error {
	if err == nil {
		return nil
	}
	var vals []string
	if proxyAuth != "" {
		vals = append(vals, proxyAuth)
		if scheme, cred, ok := strings.Cut(strings.TrimSpace(proxyAuth), " "); ok {
			cred = strings.TrimSpace(cred)
			vals = append(vals, cred)
			if strings.EqualFold(scheme, "Basic") {
				if dec, derr := base64.StdEncoding.DecodeString(cred); derr == nil {
					user, pass, _ := strings.Cut(string(dec), ":")
					vals = append(vals, string(dec), user, pass)
				}
			}
		}
	}
	for _, f := range wl.Factors {
		if v := f.Token.Reveal(); v != "" {
			vals = append(vals, v)
		}
	}
	return httpclient.RedactValues(err, vals...)
}
