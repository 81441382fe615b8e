package sigv4

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// errUnknownEndpoint: the host is not an AWS endpoint name this package
// knows; the rule must set service and region.
var errUnknownEndpoint = errors.New("not a known AWS endpoint name")

// awsSuffixes are the DNS suffixes of AWS partitions' public endpoints,
// longest first.
var awsSuffixes = []string{".amazonaws.com.cn", ".amazonaws.com", ".api.aws"}

// signingNames maps an endpoint's service label to the name requests are
// signed for (the credential scope's service). Labels not listed here are
// not guessed: the rule must name the service.
var signingNames = map[string]string{
	"s3":             "s3",
	"s3-accesspoint": "s3",
	"s3-external-1":  "s3",
	// Object Lambda and Outposts access points sign for their own names,
	// with S3's rules (s3Family).
	"s3-object-lambda": "s3-object-lambda",
	"s3-outposts":      "s3-outposts",
	"sts":              "sts",
	"dynamodb":         "dynamodb",
	"sqs":              "sqs",
	"queue":            "sqs", // queue.amazonaws.com, the legacy SQS name
	"sns":              "sns",
	"kms":              "kms",
	"secretsmanager":   "secretsmanager",
	"execute-api":      "execute-api",
	"bedrock-runtime":  "bedrock",
	"bedrock":          "bedrock",
}

// endpoint derives the signing service and region from an AWS host name:
//
//	s3.amazonaws.com, bucket.s3.amazonaws.com        s3, us-east-1
//	bucket.s3.eu-west-1.amazonaws.com                s3, eu-west-1
//	s3.dualstack.eu-west-1.amazonaws.com             s3, eu-west-1
//	s3-fips.us-gov-west-1.amazonaws.com              s3, us-gov-west-1
//	bucket.s3-eu-west-1.amazonaws.com (legacy)       s3, eu-west-1
//	sts.amazonaws.com                                sts, us-east-1
//	dynamodb.us-east-1.api.aws (dual-stack)          dynamodb, us-east-1
//	abc123.execute-api.eu-central-1.amazonaws.com    execute-api, eu-central-1
//	bedrock-runtime-fips.us-east-1.amazonaws.com     bedrock, us-east-1
//	ap-123.s3-object-lambda.us-east-1.amazonaws.com  s3-object-lambda, us-east-1
//	ap-123.op-01.s3-outposts.us-west-2.amazonaws.com s3-outposts, us-west-2
//
// host may carry a port. It returns errUnknownEndpoint for anything else.
func endpoint(host string) (service, region string, err error) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	var rest, suffix string
	for _, s := range awsSuffixes {
		if r, ok := strings.CutSuffix(host, s); ok {
			rest, suffix = r, s
			break
		}
	}
	if rest == "" {
		return "", "", fmt.Errorf("%q: %w", host, errUnknownEndpoint)
	}
	labels := strings.Split(rest, ".")
	i := len(labels) - 1
	if isRegion(labels[i]) {
		region = labels[i]
		i--
	}
	if i >= 0 && labels[i] == "dualstack" {
		i--
	}
	if i < 0 {
		return "", "", fmt.Errorf("%q: %w", host, errUnknownEndpoint)
	}
	label := strings.TrimSuffix(labels[i], "-fips")
	// Legacy S3 names put the region after a dash: s3-eu-west-1,
	// s3-fips-us-gov-west-1.
	if region == "" {
		if r, ok := strings.CutPrefix(label, "s3-"); ok && isRegion(strings.TrimPrefix(r, "fips-")) {
			label, region = "s3", strings.TrimPrefix(r, "fips-")
		}
	}
	service, ok := signingNames[label]
	if !ok {
		return "", "", fmt.Errorf("%q: service %q: %w", host, label, errUnknownEndpoint)
	}
	if region == "" {
		// Global endpoints sign for their partition's first region.
		switch {
		case suffix == ".amazonaws.com.cn":
			region = "cn-north-1"
		case label == "s3", label == "s3-external-1", label == "sts", label == "queue":
			region = "us-east-1"
		default:
			return "", "", fmt.Errorf("%q: no region in the name: %w", host, errUnknownEndpoint)
		}
	}
	return service, region, nil
}

// isRegion reports whether s looks like an AWS region name: two letters,
// optional partition words, a direction word and a number
// (us-east-1, us-gov-west-1, cn-north-1, eu-central-2, ap-southeast-4).
func isRegion(s string) bool {
	parts := strings.Split(s, "-")
	if len(parts) < 3 || len(parts[0]) != 2 || !isLetters(parts[0]) {
		return false
	}
	last := parts[len(parts)-1]
	if last == "" {
		return false
	}
	for _, c := range last {
		if c < '0' || c > '9' {
			return false
		}
	}
	for _, p := range parts[1 : len(parts)-1] {
		if p == "" || !isLetters(p) {
			return false
		}
	}
	return true
}

func isLetters(s string) bool {
	for _, c := range s {
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}
