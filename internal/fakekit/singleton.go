package fakekit

import (
	"fmt"
	"net/http"
)

// CredentialFields are the request header fields that carry a credential
// or what a service authenticates with it. Each is a singleton field: RFC
// 9110 §5.3 lets a sender repeat a field only when its definition allows
// a comma-separated list, and none of these does (Authorization, §11.6.2,
// is one credentials value). A request carrying one of them twice is
// malformed; a fake that read only the first (Header.Get) would hide a
// gateway that appended its credential beside the client's instead of
// replacing it (invariant 3), so every fake started by StartTLS refuses
// such a request with 400 before its own checks.
var CredentialFields = []string{
	"Authorization",
	// LLM APIs.
	"X-Api-Key", "Anthropic-Version", "X-Goog-Api-Key", "Api-Key",
	"OpenAI-Organization", "OpenAI-Project",
	// SaaS.
	"Stripe-Account", "Stripe-Version", "DD-API-KEY", "DD-APPLICATION-KEY",
	"X-Shopify-Access-Token",
	// Exchanges.
	"X-MBX-APIKEY", "OK-ACCESS-KEY", "OK-ACCESS-SIGN", "OK-ACCESS-TIMESTAMP",
	"OK-ACCESS-PASSPHRASE", "CB-ACCESS-KEY", "CB-ACCESS-SIGN",
	"CB-ACCESS-TIMESTAMP", "CB-ACCESS-PASSPHRASE",
	// Azure Storage, Snowflake.
	"X-Ms-Date", "X-Ms-Version", "X-Snowflake-Authorization-Token-Type",
}

// RepeatedField returns the first of CredentialFields that h carries on
// more than one field line, and "" when there is none. (A value is not
// split at commas: an HTTP-date in x-ms-date has one.)
func RepeatedField(h http.Header) string {
	for _, name := range CredentialFields {
		if len(h.Values(name)) > 1 {
			return name
		}
	}
	return ""
}

// RefuseRepeated answers 400 to a request that repeats a credential
// field, and passes every other request to next. StartTLS wraps every
// fake in it; a fake served otherwise (plain HTTP) wraps itself.
func RefuseRepeated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name := RepeatedField(r.Header); name != "" {
			http.Error(w, fmt.Sprintf("fakekit: header %s sent more than once; it is a singleton field (RFC 9110 §5.3)", name), http.StatusBadRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}
