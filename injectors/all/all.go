// Package all is the list of compiled-in injectors. The built-ins
// (header, bearer, basic, query) live in package injectors itself and are
// registered by its init; injector plugins (per-SaaS, SigV4, ...) live in
// their own packages and are added to the binary by one blank import
// here. cmd/credgate imports this package, as may a custom build
// (examples/custom-build).
package all

import (
	_ "github.com/credgate/credgate/injectors"                // header, headers, bearer, basic, query, tlsclient
	_ "github.com/credgate/credgate/injectors/anthropic"      // anthropic: x-api-key and a pinned anthropic-version
	_ "github.com/credgate/credgate/injectors/azuresharedkey" // azure-sharedkey: Azure Storage Shared Key re-signing, bodies streamed unread
	_ "github.com/credgate/credgate/injectors/datadog"        // datadog: DD-API-KEY and DD-APPLICATION-KEY, Datadog site hosts only
	_ "github.com/credgate/credgate/injectors/gemini"         // gemini: x-goog-api-key
	_ "github.com/credgate/credgate/injectors/hmac"           // hmac: request signing configured in the policy (Binance, OKX, partner APIs)
	_ "github.com/credgate/credgate/injectors/httpsig"        // httpsig: HTTP Message Signatures (RFC 9421) with Content-Digest
	_ "github.com/credgate/credgate/injectors/ocitoken"       // oci-token: container registries' token exchange done by the gateway, a token per repository and action
	_ "github.com/credgate/credgate/injectors/openai"         // openai: Bearer key, optional OpenAI-Organization / OpenAI-Project
	_ "github.com/credgate/credgate/injectors/sigv4"          // sigv4: AWS Signature Version 4 re-signing, streaming aws-chunked uploads
	_ "github.com/credgate/credgate/injectors/slack"          // slack: Bearer token, and in the token field of form bodies
	_ "github.com/credgate/credgate/injectors/stripe"         // stripe: sk_/rk_ key as Bearer, Stripe-Account and Stripe-Version pinned
	_ "github.com/credgate/credgate/injectors/twilio"         // twilio: Basic, and the Account SID written into /Accounts/-/
)
