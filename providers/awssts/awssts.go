// Package awssts is the "awssts" credential provider: short-lived AWS
// credentials per calling workload from AWS STS (or an STS-compatible
// server such as MinIO), with github.com/aws/aws-sdk-go-v2/service/sts.
// The sigv4 injector signs requests with them.
//
// # Settings
//
//	provider: awssts
//	role_arn: arn:aws:iam::123456789012:role/billing-s3   # required
//	region: eu-west-1                 # optional: STS region (default us-east-1)
//	endpoint: https://minio.internal:9000   # optional: STS endpoint URL (MinIO, VPC endpoint)
//	ca_file: /etc/credgate/sts-ca.pem # optional: CAs trusted for the endpoint, besides the system's
//	source_credential: aws-source     # optional: another credential of the policy with the caller keys
//	web_identity_token_file: /var/run/secrets/eks.amazonaws.com/serviceaccount/token  # optional
//	web_identity_from: jwt            # optional: the caller's own verified token (jwt, kubernetes, any)
//	session_name: "credgate-{{.workload.name}}"   # default
//	source_identity: "{{.workload.name}}"        # optional
//	session_tags: {team: team, workload: name}   # tag key: workload attribute
//	transitive_tag_keys: [team]       # optional
//	session_policy: '{"Version":"2012-10-17","Statement":[...]}'  # optional, narrows the role
//	policy_arns: [arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess] # optional, narrows the role
//	external_id: billing-7f3a         # optional
//	duration: 1h                      # optional: DurationSeconds (900s..12h; default 1h)
//	retries: 3                        # optional: retries of throttled or failed STS calls
//
// # Who calls STS with what
//
// Without web_identity_token_file the provider calls AssumeRole. Its
// caller credentials are those of source_credential when set (a credential
// of the policy, for example a Vault AWS key, with the fields
// access_key_id, secret_access_key and optionally session_token; the
// names of Vault's AWS engine work too), else the AWS SDK's default chain:
// environment, shared config, IRSA/EKS Pod Identity web identity, ECS or
// EC2 instance role. With web_identity_token_file it calls
// AssumeRoleWithWebIdentity with the token read from the file at every
// call (a projected Kubernetes service-account token rotates), needing no
// AWS credentials at all. With web_identity_from it calls
// AssumeRoleWithWebIdentity with the calling workload's own token, the one
// its jwt (or kubernetes) factor verified: the role's trust policy then
// names the workload's identity provider and subject, so AWS itself
// checks which workload gets the role. Sessions are cached per caller
// token.
//
// # Per workload
//
// session_name and source_identity may contain {{.workload.name}} (the
// workload's name in the policy) and {{.workload.ATTR}} (an attribute of
// a verified factor, for example namespace or service_account). The
// result is sanitised to STS's character set ([A-Za-z0-9_+=,.@-], other
// characters become '-') and cut to 64 characters. session_tags maps a
// tag key to a workload attribute ("name" is the workload's name); a
// missing attribute, or a value outside STS's tag character set, fails
// the fetch (tags drive ABAC, so they are never guessed or rewritten).
// AssumeRoleWithWebIdentity takes no tags or source identity from the
// request (they come from the token), so those settings are refused with
// it.
//
// The provider is Scoped: credentials are cached per role (the
// credential's definition, with its session policy) and per workload (the
// rendered session name, source identity and tags), and are refreshed by
// the gateway's cache ahead of their Expiration.
//
// # Failures
//
// Throttling (STS answers HTTP 400 with the code Throttling, "Rate
// exceeded"), 5xx answers and network errors are retried by the SDK's
// standard retryer (jittered exponential backoff, at most retries
// retries, at most 5 s between attempts); when they persist the error
// wraps providers.ErrUnavailable (503 with Retry-After; the cache asks
// again after its error_backoff). Whatever the retryer retries is
// ErrUnavailable: the same rules decide both. Other errors (AccessDenied,
// a malformed policy, a refused web identity token) are plain errors
// (502). No error contains a key, session token or web identity token.
package awssts

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/credgate/credgate/identity"
	"github.com/credgate/credgate/internal/cabundle"
	"github.com/credgate/credgate/internal/cfgfile"
	"github.com/credgate/credgate/internal/httpclient"
	"github.com/credgate/credgate/providers"
)

func init() {
	providers.Register(providers.Module{
		Name: "awssts",
		Doc:  "AWS STS AssumeRole / AssumeRoleWithWebIdentity: temporary AWS keys per workload",
		SettingDocs: map[string]string{
			"role_arn":                "the role to assume",
			"region":                  "the STS signing region",
			"endpoint":                "the STS endpoint URL (default the SDK's for region)",
			"ca_file":                 "PEM CAs trusted for endpoint, added to the system roots",
			"source_credential":       "the policy credential whose AWS keys call AssumeRole",
			"web_identity_token_file": "AssumeRoleWithWebIdentity with the token in this file",
			"web_identity_from":       "AssumeRoleWithWebIdentity with the caller's verified token: jwt, kubernetes or any",
			"session_name":            "the RoleSessionName template",
			"source_identity":         "the SourceIdentity template (empty: none)",
			"session_tags":            "session tag keys mapped to workload attributes",
			"transitive_tag_keys":     "session tags that pass on to chained roles",
			"session_policy":          "an inline session policy (JSON) narrowing the role",
			"policy_arns":             "managed policies narrowing the role",
			"external_id":             "the role's external id condition value",
			"duration":                "the session duration",
			"retries":                 "how often a throttled or failed call is retried",
		},
		New: func() providers.Provider { return new(Provider) },
	})
}

// Defaults applied by Provision.
const (
	DefaultRegion      = "us-east-1"
	DefaultSessionName = "credgate-{{.workload.name}}"
	DefaultDuration    = time.Hour
	DefaultRetries     = 3
	maxBackoff         = 5 * time.Second
)

// ErrWorkloadAttribute marks a workload attribute that a session name,
// source identity or tag needs and the caller does not have, or that STS
// would not accept as a tag value.
var ErrWorkloadAttribute = errors.New("workload attribute not usable for the STS session")

// Provider is the "awssts" provider. See the package documentation.
type Provider struct {
	// RoleARN is the role to assume. Required.
	RoleARN string `yaml:"role_arn"`
	// Region is the STS signing region. Default DefaultRegion.
	Region string `yaml:"region"`
	// Endpoint is the STS endpoint URL; default the SDK's for Region.
	Endpoint string `yaml:"endpoint"`
	// CAFile is a PEM file of CAs trusted for Endpoint, added to the
	// system roots.
	CAFile string `yaml:"ca_file"`
	// SourceCredential names the policy credential whose AWS keys call
	// AssumeRole. Default: the SDK's default credential chain.
	SourceCredential string `yaml:"source_credential"`
	// WebIdentityTokenFile switches to AssumeRoleWithWebIdentity with the
	// token in this file (the gateway's own projected token).
	WebIdentityTokenFile string `yaml:"web_identity_token_file"`
	// WebIdentityFrom switches to AssumeRoleWithWebIdentity with the
	// calling workload's own verified token: "jwt" or "kubernetes" (the
	// factor that verified it), or "any" for the first verified token. The
	// role's trust policy then sees the workload's identity provider and
	// subject, not the gateway's.
	WebIdentityFrom string `yaml:"web_identity_from"`
	// SessionName is the RoleSessionName template. Default
	// DefaultSessionName.
	SessionName string `yaml:"session_name"`
	// SourceIdentity is the SourceIdentity template; empty sends none.
	SourceIdentity string `yaml:"source_identity"`
	// SessionTags maps session tag keys to workload attributes.
	SessionTags map[string]string `yaml:"session_tags"`
	// TransitiveTagKeys are session tags that pass on to chained roles.
	TransitiveTagKeys []string `yaml:"transitive_tag_keys"`
	// SessionPolicy is an inline session policy (JSON) narrowing the role.
	SessionPolicy string `yaml:"session_policy"`
	// PolicyARNs are managed policies narrowing the role.
	PolicyARNs []string `yaml:"policy_arns"`
	// ExternalID is the role's external id condition value.
	ExternalID string `yaml:"external_id"`
	// Duration is the session duration. Default DefaultDuration.
	Duration time.Duration `yaml:"duration"`
	// Retries is how often a throttled or failed call is retried.
	// Default DefaultRetries; negative means none.
	Retries *int `yaml:"retries"`

	mu          sync.Mutex
	client      *sts.Client        // built by stsClient
	source      providers.Provider // the input named SourceCredential
	sessionName template
	sourceIDT   template
	backoff     retry.BackoffDelayer // nil: the SDK's jittered exponential backoff
	now         func() time.Time     // nil: time.Now (tests: the cache's fake clock)
	// log is where ServerExpiry says a Date it did not trust (providers.Env).
	log *slog.Logger
}

// clock returns the provider's time.
func (p *Provider) clock() time.Time {
	if p.now != nil {
		return p.now()
	}
	return time.Now()
}

// Inputs implements providers.Composer.
func (p *Provider) Inputs() []string {
	if p.SourceCredential == "" {
		return nil
	}
	return []string{p.SourceCredential}
}

// SetInputs implements providers.Composer.
func (p *Provider) SetInputs(in map[string]providers.Provider) { p.source = in[p.SourceCredential] }

// Validate checks the settings.
func (p *Provider) Validate() error {
	if !strings.HasPrefix(p.RoleARN, "arn:") || strings.Count(p.RoleARN, ":") < 5 {
		return fmt.Errorf("awssts: role_arn %q is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)", p.RoleARN)
	}
	if p.Endpoint != "" {
		// Signed STS calls, web identity tokens and the issued keys cross
		// this connection: https, or plain http to loopback only.
		if err := httpclient.CheckURL(p.Endpoint); err != nil {
			return fmt.Errorf("awssts: endpoint %w", err)
		}
	}
	if p.Duration != 0 && (p.Duration < 15*time.Minute || p.Duration > 12*time.Hour) {
		return fmt.Errorf("awssts: duration %s is outside STS's 15m..12h", p.Duration)
	}
	switch p.WebIdentityFrom {
	case "", identity.KindJWT, identity.KindKubernetes, "any":
	default:
		return fmt.Errorf("awssts: web_identity_from %q: use jwt, kubernetes or any (the caller's verified token)", p.WebIdentityFrom)
	}
	if p.WebIdentityTokenFile != "" && p.WebIdentityFrom != "" {
		return fmt.Errorf("awssts: web_identity_token_file and web_identity_from exclude each other")
	}
	if p.WebIdentityTokenFile != "" || p.WebIdentityFrom != "" {
		if p.SourceCredential != "" {
			return fmt.Errorf("awssts: web identity and source_credential exclude each other")
		}
		if len(p.SessionTags) > 0 || p.SourceIdentity != "" || p.ExternalID != "" {
			return fmt.Errorf("awssts: session_tags, source_identity and external_id are not sent with a web identity (AssumeRoleWithWebIdentity takes them from the token)")
		}
	}
	for k := range p.SessionTags {
		if !tagRE().MatchString(k) || len(k) > 128 {
			return fmt.Errorf("awssts: session tag key %q is not a valid tag key", k)
		}
	}
	if p.SessionPolicy != "" && !json.Valid([]byte(p.SessionPolicy)) {
		return fmt.Errorf("awssts: session_policy is not a JSON document")
	}
	if len(p.SessionPolicy) > 2048 {
		return fmt.Errorf("awssts: session_policy has %d characters, STS accepts 2048", len(p.SessionPolicy))
	}
	return nil
}

// Provision applies the defaults and parses the templates. It reads no
// file and contacts nothing: the STS client is built at the first Fetch.
func (p *Provider) Provision(ctx context.Context) error {
	p.log = providers.EnvFrom(ctx).Log
	if p.Region == "" {
		p.Region = DefaultRegion
	}
	if p.SessionName == "" {
		p.SessionName = DefaultSessionName
	}
	if p.Duration == 0 {
		p.Duration = DefaultDuration
	}
	var err error
	if p.sessionName, err = parseTemplate("session_name", p.SessionName); err != nil {
		return err
	}
	if p.sourceIDT, err = parseTemplate("source_identity", p.SourceIdentity); err != nil {
		return err
	}
	return nil
}

// stsClient returns the STS client, built at the first call (reading
// ca_file and the SDK's shared configuration then, not when the policy
// loads, so `credgate validate` passes on a machine without them). A
// failed build is retried at the next call.
func (p *Provider) stsClient(ctx context.Context) (*sts.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client != nil {
		return p.client, nil
	}
	c, err := p.newClient(ctx)
	if err != nil {
		return nil, err
	}
	p.client = c
	return c, nil
}

func (p *Provider) newClient(ctx context.Context) (*sts.Client, error) {
	retries := DefaultRetries
	if p.Retries != nil {
		retries = max(*p.Retries, 0)
	}
	// The gateway's own calls to STS go direct, never through
	// HTTPS_PROXY. WithCustomCABundle below (and AWS_CA_BUNDLE) need the
	// SDK's BuildableClient, so the shared settings are applied to the
	// transport it builds.
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(httpclient.Configure)
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(p.Region),
		config.WithHTTPClient(httpClient),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = retries + 1
				o.MaxBackoff = maxBackoff
				o.RateLimiter = ratelimit.None // the credential cache already spaces failures
				if p.backoff != nil {
					o.Backoff = p.backoff
				}
			})
		}),
	}
	if p.CAFile != "" {
		pem, err := cfgfile.Read(p.CAFile)
		if err != nil {
			return nil, fmt.Errorf("awssts: read ca_file: %w", err)
		}
		if _, err := cabundle.ParseRoots(pem); err != nil {
			return nil, fmt.Errorf("awssts: ca_file %s: %w", p.CAFile, err)
		}
		// Added to the system roots; wins over AWS_CA_BUNDLE.
		opts = append(opts, config.WithCustomCABundle(bytes.NewReader(pem)))
	}
	if p.SourceCredential != "" || p.WebIdentityTokenFile != "" || p.WebIdentityFrom != "" {
		// Per-call credentials (or none): do not resolve the default chain.
		opts = append(opts, config.WithCredentialsProvider(aws.AnonymousCredentials{}))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("awssts: load AWS SDK configuration: %w", err)
	}
	// The SDK follows 307 and 308 redirects (re-sending a web identity
	// token in the body to wherever they point, when it can replay the
	// body) and reads whole answers: Guard refuses every redirect and
	// bounds the answers, on the transport the SDK built (with the CA
	// bundle it was given).
	bc, ok := cfg.HTTPClient.(*awshttp.BuildableClient)
	if !ok {
		return nil, fmt.Errorf("awssts: the AWS SDK's HTTP client is a %T, not the one it builds", cfg.HTTPClient)
	}
	guarded := &http.Client{
		Transport:     httpclient.Guard(bc.GetTransport(), 0),
		Timeout:       bc.GetTimeout(),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	// The SDK's errors quote an answer it cannot read; an endpoint echoing
	// the request there (a web identity token, a source session token)
	// must not put it in ours.
	cfg.HTTPClient = httpclient.RedactErrors(guarded)
	c := sts.NewFromConfig(cfg, func(o *sts.Options) {
		if p.Endpoint != "" {
			o.BaseEndpoint = aws.String(p.Endpoint)
		}
	})
	// Without endpoint, the SDK may take one from its own configuration;
	// it is held to the rule endpoint is held to at load.
	if ep := c.Options().BaseEndpoint; ep != nil && p.Endpoint == "" {
		if err := httpclient.CheckURL(*ep); err != nil {
			return nil, fmt.Errorf("awssts: the STS endpoint from the AWS SDK's configuration (AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL or endpoint_url in the shared config) %w", err)
		}
	}
	return c, nil
}

// CacheScope implements providers.Scoped: one credential per caller
// inputs of the STS call, derived from their full values before they are
// sanitised or cut to STS's 64 characters (two callers whose session
// names differ only after the 64th character, or only in characters the
// sanitiser replaces, get their own sessions): the rendered session name
// and source identity, each session tag's attribute value and, with
// web_identity_from, the caller and a digest of its token.
func (p *Provider) CacheScope(req providers.Request) string {
	w := req.Workload
	s := providers.NewScope("awssts")
	s.AddTemplate("session_name", p.sessionName.t, w, nil)
	if p.SourceIdentity != "" {
		s.AddTemplate("source_identity", p.sourceIDT.t, w, nil)
	}
	keys := make([]string, 0, len(p.SessionTags))
	for k := range p.SessionTags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v, err := w.Attribute(p.SessionTags[k])
		if err != nil {
			s.Add("session_tags."+k+"!", err.Error())
			continue
		}
		s.Add("session_tags."+k, v)
	}
	if p.WebIdentityFrom != "" {
		// One session per caller token: a digest, never the token.
		tok, err := p.callerToken(w)
		s.Add("caller", w.DisplayName())
		s.AddToken("caller_token", tok, err)
	}
	return s.String()
}

// sessionInput is what a workload contributes to the STS call.
type sessionInput struct {
	name, sourceIdentity string
	tags                 []ststypes.Tag
}

func (p *Provider) session(w identity.Workload) (sessionInput, error) {
	var in sessionInput
	name, err := p.sessionName.render(w)
	if err != nil {
		return in, err
	}
	in.name = sanitizeSessionName(name)
	if p.SourceIdentity != "" {
		sid, err := p.sourceIDT.render(w)
		if err != nil {
			return in, err
		}
		in.sourceIdentity = sanitizeSessionName(sid)
	}
	keys := make([]string, 0, len(p.SessionTags))
	for k := range p.SessionTags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v, err := attribute(w, p.SessionTags[k])
		if err != nil {
			return in, fmt.Errorf("session tag %s: %w", k, err)
		}
		if len(v) > 256 || !tagRE().MatchString(v) {
			return in, fmt.Errorf("session tag %s: the value of attribute %s is outside STS's tag character set or longer than 256: %w", k, p.SessionTags[k], ErrWorkloadAttribute)
		}
		in.tags = append(in.tags, ststypes.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	return in, nil
}

// Fetch assumes the role for the caller.
func (p *Provider) Fetch(ctx context.Context, req providers.Request) (*providers.Credential, error) {
	in, err := p.session(req.Workload)
	if err != nil {
		return nil, fmt.Errorf("awssts: %s for workload %s: %w", p.RoleARN, req.Workload.DisplayName(), err)
	}
	var creds *ststypes.Credentials
	switch {
	case p.WebIdentityTokenFile != "":
		tok, rerr := providers.ReadFile(ctx, "awssts: web_identity_token_file", "the web identity token", p.WebIdentityTokenFile)
		if rerr != nil {
			return nil, rerr
		}
		creds, err = p.webIdentity(ctx, in, strings.TrimSpace(string(tok)))
	case p.WebIdentityFrom != "":
		tok, terr := p.callerToken(req.Workload)
		if terr != nil {
			return nil, fmt.Errorf("awssts: %s: %w", p.RoleARN, terr)
		}
		creds, err = p.webIdentity(ctx, in, tok)
	default:
		creds, err = p.assumeRole(ctx, req, in)
	}
	if err != nil {
		return nil, err
	}
	if creds == nil || aws.ToString(creds.AccessKeyId) == "" || aws.ToString(creds.SecretAccessKey) == "" {
		return nil, fmt.Errorf("awssts: assume %s: the answer holds no credentials", p.RoleARN)
	}
	// STS's temporary credentials always come with their session token
	// (without it every AWS service refuses the keys) and an expiration
	// (without it they would be cached as if they never expired): an
	// answer lacking either is broken, and nothing of it is used.
	if aws.ToString(creds.SessionToken) == "" {
		return nil, fmt.Errorf("awssts: assume %s: the answer's credentials have no SessionToken; check that endpoint is an STS endpoint", p.RoleARN)
	}
	if creds.Expiration == nil || creds.Expiration.IsZero() {
		return nil, fmt.Errorf("awssts: assume %s: the answer's credentials have no Expiration; check that endpoint is an STS endpoint", p.RoleARN)
	}
	// An Expiration already past (on the gateway's clock, after
	// onGatewayClock) is STS's fault, named here rather than left to
	// the cache's generic "already expired".
	if err := providers.CheckExpiry("Expiration", *creds.Expiration, p.clock()); err != nil {
		return nil, fmt.Errorf("awssts: assume %s: the answer's %w", p.RoleARN, err)
	}
	return &providers.Credential{Fields: map[string]providers.Secret{
		providers.FieldAccessKeyID:     providers.NewSecret(aws.ToString(creds.AccessKeyId)),
		providers.FieldSecretAccessKey: providers.NewSecret(aws.ToString(creds.SecretAccessKey)),
		providers.FieldSessionToken:    providers.NewSecret(aws.ToString(creds.SessionToken)),
	}, Expiry: *creds.Expiration}, nil
}

func (p *Provider) assumeRole(ctx context.Context, req providers.Request, in sessionInput) (*ststypes.Credentials, error) {
	input := &sts.AssumeRoleInput{
		RoleArn:           aws.String(p.RoleARN),
		RoleSessionName:   aws.String(in.name),
		DurationSeconds:   aws.Int32(int32(p.Duration / time.Second)),
		Tags:              in.tags,
		TransitiveTagKeys: p.TransitiveTagKeys,
		PolicyArns:        policyARNs(p.PolicyARNs),
	}
	if in.sourceIdentity != "" {
		input.SourceIdentity = aws.String(in.sourceIdentity)
	}
	if p.SessionPolicy != "" {
		input.Policy = aws.String(p.SessionPolicy)
	}
	if p.ExternalID != "" {
		input.ExternalId = aws.String(p.ExternalID)
	}
	var optFns []func(*sts.Options)
	var sent []string // secret values the call sends, redacted from its error
	if p.SourceCredential != "" {
		if p.source == nil {
			return nil, fmt.Errorf("awssts: source_credential %q was not provided by the policy", p.SourceCredential)
		}
		src, err := p.source.Fetch(ctx, providers.Request{Credential: p.SourceCredential, Workload: req.Workload})
		if err != nil {
			return nil, fmt.Errorf("awssts: fetch source credential %q: %w", p.SourceCredential, err)
		}
		ac, err := sourceKeys(src)
		if err != nil {
			return nil, fmt.Errorf("awssts: source credential %q: %w", p.SourceCredential, err)
		}
		sent = append(sent, ac.SessionToken, ac.SecretAccessKey)
		optFns = append(optFns, func(o *sts.Options) { o.Credentials = aws.NewCredentialsCache(staticCreds(ac)) })
	}
	client, err := p.stsClient(ctx)
	if err != nil {
		return nil, err
	}
	start := p.clock()
	out, err := client.AssumeRole(ctx, input, optFns...)
	if err != nil {
		return nil, classify("assume role "+p.RoleARN, httpclient.RedactValues(err, append(sent, p.ExternalID)...))
	}
	return p.onGatewayClock(out.Credentials, out.ResultMetadata, start), nil
}

// callerToken returns the workload's verified token that
// web_identity_from names.
func (p *Provider) callerToken(w identity.Workload) (string, error) {
	for _, f := range w.Factors {
		if f.Token.IsZero() {
			continue
		}
		if p.WebIdentityFrom == "any" || p.WebIdentityFrom == f.Kind {
			return f.Token.Reveal(), nil
		}
	}
	return "", fmt.Errorf("workload %s presented no verified %s token for AssumeRoleWithWebIdentity", w.DisplayName(), p.WebIdentityFrom)
}

func (p *Provider) webIdentity(ctx context.Context, in sessionInput, token string) (*ststypes.Credentials, error) {
	input := &sts.AssumeRoleWithWebIdentityInput{
		RoleArn:          aws.String(p.RoleARN),
		RoleSessionName:  aws.String(in.name),
		WebIdentityToken: aws.String(token),
		DurationSeconds:  aws.Int32(int32(p.Duration / time.Second)),
		PolicyArns:       policyARNs(p.PolicyARNs),
	}
	if p.SessionPolicy != "" {
		input.Policy = aws.String(p.SessionPolicy)
	}
	client, err := p.stsClient(ctx)
	if err != nil {
		return nil, err
	}
	start := p.clock()
	out, err := client.AssumeRoleWithWebIdentity(ctx, input)
	if err != nil {
		// An endpoint echoing the request puts the token in the message
		// the SDK quotes.
		return nil, classify("assume role with web identity "+p.RoleARN, httpclient.RedactValues(err, token))
	}
	return p.onGatewayClock(out.Credentials, out.ResultMetadata, start), nil
}

// onGatewayClock moves creds' Expiration, an instant on STS's clock, to
// the gateway's: the lifetime the answer states (Expiration minus its
// Date header, which the SDK keeps as the server time) counted from
// start, when the request was sent (providers.ServerExpiry). AWS judges
// the keys on its own clock; a gateway clock behind it would otherwise
// sign with keys AWS already refuses, one ahead by more than the
// lifetime would take every answer for expired.
func (p *Provider) onGatewayClock(creds *ststypes.Credentials, meta middleware.Metadata, start time.Time) *ststypes.Credentials {
	if creds == nil || creds.Expiration == nil {
		return creds
	}
	date, _ := awsmiddleware.GetServerTime(meta)
	exp := providers.ServerExpiry(p.log, "awssts "+p.RoleARN, *creds.Expiration, date, start)
	creds.Expiration = &exp
	return creds
}

// classify wraps err: what the SDK's retryer retries (throttling codes
// such as STS's Throttling "Rate exceeded" at HTTP 400, transient codes,
// connection errors), STS's IDPCommunicationError, any 5xx or 429, and
// timeouts are ErrUnavailable (503, asked again after the cache's error
// backoff): the same rules decide both, so an error the SDK retried as
// temporary is never reported as a refusal once the retries run out.
// Other errors (AccessDenied, a malformed policy, a bad web identity
// token) are plain errors (502). The SDK's errors carry the STS error code
// and message and request id; callers redact from err what they sent (an
// endpoint can echo it in the message). An answer that redirects or is
// larger than httpclient.MaxAnswer is a plain error: the endpoint is
// misconfigured, retrying will not help.
func classify(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("awssts: %s: %w: %w", op, providers.ErrUnavailable, err)
	}
	var rd *httpclient.RedirectError
	if errors.As(err, &rd) || errors.Is(err, httpclient.ErrAnswerTooLarge) {
		return fmt.Errorf("awssts: %s: %w", op, err)
	}
	// Expiration is the one time in STS's answer: a time the SDK cannot
	// parse is that field's, named without the SDK's message (which
	// quotes what the endpoint sent).
	if strings.Contains(err.Error(), "unable to parse time string") {
		return fmt.Errorf("awssts: %s: the answer's Expiration is not an ISO 8601 time: %w: %w", op, providers.ErrBadLifetime, providers.ErrUnavailable)
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && (re.HTTPStatusCode() >= 500 || re.HTTPStatusCode() == http.StatusTooManyRequests) {
		return fmt.Errorf("awssts: %s: %w: %w", op, providers.ErrUnavailable, err)
	}
	// MaxAttemptsError: the retryer retried err until it ran out of
	// attempts, so it found it temporary.
	var ne net.Error
	var oe *net.OpError
	if temporary(err) || errors.As(err, new(*retry.MaxAttemptsError)) || errors.As(err, &ne) || errors.As(err, &oe) {
		return fmt.Errorf("awssts: %s: %w: %w", op, providers.ErrUnavailable, err)
	}
	return fmt.Errorf("awssts: %s: %w", op, err)
}

// stsRetryableCodes are the codes the STS client retries besides the
// SDK's defaults (it adds IDPCommunicationError to its retryer).
var stsRetryableCodes = map[string]struct{}{"IDPCommunicationError": {}}

// temporary reports whether the SDK's standard retryer, as the STS client
// configures it, retries err.
func temporary(err error) bool {
	checks := append(slices.Clone(retry.DefaultRetryables), retry.RetryableErrorCode{Codes: stsRetryableCodes})
	return retry.IsErrorRetryables(checks).IsErrorRetryable(err) == aws.TrueTernary
}

func policyARNs(arns []string) []ststypes.PolicyDescriptorType {
	var out []ststypes.PolicyDescriptorType
	for _, a := range arns {
		out = append(out, ststypes.PolicyDescriptorType{Arn: aws.String(a)})
	}
	return out
}

// sourceKeys reads AWS keys from a source credential: providers' names,
// or those of Vault's AWS secrets engine.
func sourceKeys(c *providers.Credential) (aws.Credentials, error) {
	get := func(names ...string) string {
		for _, n := range names {
			if s, ok := c.Field(n); ok {
				return s.Reveal()
			}
		}
		return ""
	}
	ac := aws.Credentials{
		AccessKeyID:     get(providers.FieldAccessKeyID, "access_key"),
		SecretAccessKey: get(providers.FieldSecretAccessKey, "secret_key"),
		SessionToken:    get(providers.FieldSessionToken, "security_token"),
		Source:          "credgate source_credential",
	}
	if ac.AccessKeyID == "" || ac.SecretAccessKey == "" {
		return aws.Credentials{}, fmt.Errorf("no %s/%s fields: %w", providers.FieldAccessKeyID, providers.FieldSecretAccessKey, providers.ErrUnavailable)
	}
	return ac, nil
}

// staticCreds is an aws.CredentialsProvider for keys already fetched.
type staticCreds aws.Credentials

func (s staticCreds) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials(s), nil
}

// sessionNameRE is STS's character set for RoleSessionName and
// SourceIdentity; tagRE that of tag keys and values, compiled on first
// use (its Unicode classes make a 36 KB program).
var (
	sessionBadRE = regexp.MustCompile(`[^\w+=,.@-]`)
	tagRE        = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`) })
)

// sanitizeSessionName maps s to STS's RoleSessionName rules: characters
// outside [\w+=,.@-] become '-', at most 64 characters, at least 2. A
// longer name keeps its first 47 characters and ends in '-' and 16 hex
// digits of the SHA-256 of s, so that names differing only after the
// 64th character stay apart in CloudTrail too.
func sanitizeSessionName(s string) string {
	raw := s
	s = sessionBadRE.ReplaceAllString(s, "-")
	if len(s) > 64 {
		d := sha256.Sum256([]byte(raw))
		s = s[:47] + "-" + hex.EncodeToString(d[:8])
	}
	for len(s) < 2 {
		s += "-"
	}
	return s
}

// CheckSources reports ca_file and web_identity_token_file when they
// cannot be read now (providers.SourceChecker); both are read only when
// the provider first calls STS or fetches. The token file is judged for
// a loose mode as a token (providers.CheckTokenFile).
func (p *Provider) CheckSources() []providers.SourceProblem {
	var out []providers.SourceProblem
	if p.CAFile != "" {
		if err := providers.CheckCAFile("awssts: ca_file", p.CAFile, "PEM CA certificates"); err != nil {
			out = append(out, providers.SourceProblem{Setting: "ca_file", Err: err})
		}
	}
	if p.WebIdentityTokenFile != "" {
		// A projected service-account token (EKS's IRSA mounts one):
		// judged for write and owner only, 0644 is Kubernetes' own.
		out = append(out, providers.CheckTokenFile("awssts", "web_identity_token_file", p.WebIdentityTokenFile, "the web identity token")...)
	}
	return out
}

// Interface guards.
var (
	_ providers.SourceChecker = (*Provider)(nil)
	_ providers.Provider      = (*Provider)(nil)
	_ providers.Provisioner   = (*Provider)(nil)
	_ providers.Validator     = (*Provider)(nil)
	_ providers.Scoped        = (*Provider)(nil)
	_ providers.Composer      = (*Provider)(nil)
)
