{{/* Chart name. */}}
{{- define "credgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless the release name already contains the chart name. */}}
{{- define "credgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "credgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "credgate.labels" -}}
helm.sh/chart: {{ include "credgate.chart" . }}
{{ include "credgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of the gateway pods. */}}
{{- define "credgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "credgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "credgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "credgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The container image reference. */}}
{{- define "credgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Secret with the interception CA key pair (tls.crt, tls.key). */}}
{{- define "credgate.caSecretName" -}}
{{- default (printf "%s-ca-keypair" (include "credgate.fullname" .)) .Values.ca.existingSecret }}
{{- end }}

{{/* ConfigMap with only the CA certificate, for applications. */}}
{{- define "credgate.caConfigMapName" -}}
{{- default (printf "%s-ca" (include "credgate.fullname" .)) .Values.ca.configMapName }}
{{- end }}

{{- define "credgate.policyConfigMapName" -}}
{{- default (printf "%s-policy" (include "credgate.fullname" .)) .Values.existingPolicyConfigMap }}
{{- end }}

{{/* The public CA certificate: from values, or (cert-manager, on upgrade) from the issued Secret. Never the key. */}}
{{- define "credgate.caCertificate" -}}
{{- if .Values.ca.certificate }}
{{- .Values.ca.certificate }}
{{- else if .Values.ca.certManager.enabled }}
{{- $s := lookup "v1" "Secret" .Release.Namespace (include "credgate.caSecretName" .) }}
{{- if and $s $s.data (index $s.data "tls.crt") }}
{{- index $s.data "tls.crt" | b64dec }}
{{- end }}
{{- end }}
{{- end }}

{{/* The gateway config file (keys per the gateway's strict config schema). */}}
{{- define "credgate.config" -}}
{{- $c := .Values.config -}}
listen: ":{{ .Values.proxyPort }}"
{{- if .Values.tls.enabled }}
tls_listen: ":{{ .Values.tls.port }}"
tls:
  {{- if include "credgate.svidListener" . }}
  svid: true
  {{- else }}
  cert: tls/tls.crt
  key: tls/tls.key
  {{- end }}
  {{- if .Values.tls.clientCAConfigMap }}
  client_ca: client-ca/{{ .Values.tls.clientCAKey }}
  {{- end }}
{{- end }}
admin_listen: ":{{ .Values.adminPort }}"
policy: policy/{{ .Values.policyKey }}
ca:
  cert: ca/tls.crt
  key: ca/tls.key
  leaf_ttl: {{ $c.ca.leafTTL }}
  leaf_cache_size: {{ $c.ca.leafCacheSize }}
upstream:
  {{- if $c.upstream.caBundleConfigMap }}
  ca_bundle: upstream-ca/{{ $c.upstream.caBundleKey }}
  {{- end }}
  dial_timeout: {{ $c.upstream.dialTimeout }}
  tls_handshake_timeout: {{ $c.upstream.tlsHandshakeTimeout }}
  response_header_timeout: {{ $c.upstream.responseHeaderTimeout }}
  idle_conn_timeout: {{ $c.upstream.idleConnTimeout }}
  max_idle_conns_per_host: {{ $c.upstream.maxIdleConnsPerHost }}
{{- with $c.resolve }}
resolve:
  {{- range $k, $v := . }}
  {{ $k | quote }}: {{ $v | quote }}
  {{- end }}
{{- end }}
limits:
  max_header_bytes: {{ $c.limits.maxHeaderBytes }}
  read_header_timeout: {{ $c.limits.readHeaderTimeout }}
  idle_timeout: {{ $c.limits.idleTimeout }}
  body_idle_timeout: {{ $c.limits.bodyIdleTimeout }}
  body_min_rate: {{ $c.limits.bodyMinRate }}
  long_lived:
    idle_timeout: {{ $c.limits.longLived.idleTimeout }}
    max_lifetime: {{ $c.limits.longLived.maxLifetime }}
cache:
  default_ttl: {{ $c.cache.defaultTTL }}
  refresh_ahead: {{ $c.cache.refreshAhead }}
  error_backoff: {{ $c.cache.errorBackoff }}
  fetch_timeout: {{ $c.cache.fetchTimeout }}
  {{- with .Values.redis }}
  {{- if .enabled }}
  redis:
    addrs: [{{ .address | quote }}]
    namespace: {{ .namespace | default (include "credgate.fullname" $) | quote }}
    {{- if .username }}
    username: {{ .username | quote }}
    {{- end }}
    {{- if .passwordSecret.name }}
    password_env: CREDGATE_REDIS_PASSWORD
    {{- end }}
    {{- if .tls }}
    tls: {enabled: true}
    {{- end }}
    encryption_keys:
    {{- range $i, $k := .encryptionKeys }}
      - {id: {{ $k.id | quote }}, env: CREDGATE_REDIS_KEY_{{ $i }}}
    {{- end }}
  {{- end }}
  {{- end }}
audit:
  output: {{ $c.auditOutput }}
log:
  level: {{ $c.logLevel }}
shutdown_timeout: {{ $c.shutdownTimeout }}
{{- if or .Values.admin.tokenSecret.name .Values.admin.tls.enabled }}
admin:
  {{- if .Values.admin.tokenSecret.name }}
  token_file: admin-token/{{ .Values.admin.tokenSecret.key }}
  {{- end }}
  {{- with .Values.admin.tls }}
  {{- if .enabled }}
  tls:
    cert: admin-tls/tls.crt
    key: admin-tls/tls.key
    {{- if .clientCAConfigMap }}
    client_ca: admin-client-ca/{{ .clientCAKey }}
    {{- end }}
  {{- end }}
  {{- end }}
{{- end }}
{{- with include "credgate.identityConfig" . | trim }}
identity:
  {{- . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Where the pod's Kubernetes API token, cluster CA and namespace are
mounted when identity needs the API server (the in-cluster default paths). */}}
{{- define "credgate.kubeAPIDir" -}}
/var/run/secrets/kubernetes.io/serviceaccount
{{- end }}

{{/* "true" when the TLS listener serves the gateway's X.509-SVID from the
SPIRE agent (tls.svid) instead of the tls.existingSecret certificate. */}}
{{- define "credgate.svidListener" -}}
{{- if and .Values.tls.enabled .Values.spire.enabled .Values.spire.svidListener }}true{{ end }}
{{- end }}

{{/* The SPIRE agent's Workload API socket in the container. */}}
{{- define "credgate.spireSocket" -}}
{{- with .Values.spire.agentSocket }}{{ printf "unix://%s/%s" (trimSuffix "/" .mountPath) .fileName }}{{ end }}
{{- end }}

{{/* "true" when identity talks to the Kubernetes API server. */}}
{{- define "credgate.needsKubeAPI" -}}
{{- if or .Values.identity.jwt.kubernetes.enabled .Values.identity.tokenReview.enabled }}true{{ end }}
{{- end }}

{{/* The path, relative to /etc/credgate, of an identity.mtls.bundles entry
from a ConfigMap; args: (list INDEX ENTRY). */}}
{{- define "credgate.bundleFile" -}}
{{- $i := index . 0 }}{{ $b := index . 1 -}}
{{- if $b.file }}{{ $b.file }}{{ else }}identity/bundles/{{ $i }}/{{ $b.key }}{{ end }}
{{- end }}

{{/* One identity.jwt.issuers entry in the gateway's keys (camelCase values
keys to the config's snake_case; values.schema.json allows no others). */}}
{{- define "credgate.issuer" -}}
{{- $names := dict "issuer" "issuer" "profile" "profile" "audiences" "audiences" "algorithms" "algorithms"
  "jwksFile" "jwks_file" "jwksURL" "jwks_url" "discoveryURL" "discovery_url" "caFile" "ca_file"
  "bearerTokenFile" "bearer_token_file" "trustDomain" "trust_domain" "claims" "claims"
  "refreshInterval" "refresh_interval" "minRefetchInterval" "min_refetch_interval" "fetchTimeout" "fetch_timeout" -}}
{{- $out := dict -}}
{{- range $k, $v := . }}
{{- $_ := set $out (required (printf "identity.jwt.issuers: unknown key %s" $k) (get $names $k)) $v }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* The identity: block of the gateway config (docs/config.md#identity);
empty when no identity value is set. */}}
{{- define "credgate.identityConfig" -}}
{{- $id := .Values.identity -}}
{{- $api := trimSuffix "/" $id.apiServer -}}
{{- $kube := include "credgate.kubeAPIDir" . -}}
{{- $m := $id.mtls -}}
{{- if or $m.bundles $m.trustDomains $m.requireSPIFFE .Values.spire.enabled }}
mtls:
  {{- with $m.bundles }}
  bundles:
    {{- range $i, $b := . }}
    - file: {{ include "credgate.bundleFile" (list $i $b) | quote }}
      {{- with $b.trustDomain }}
      trust_domain: {{ . | quote }}
      {{- end }}
    {{- end }}
  {{- end }}
  {{- with $m.trustDomains }}
  trust_domains: {{ toJson . }}
  {{- end }}
  {{- with .Values.spire }}
  {{- if .enabled }}
  # Bundles (and the gateway's SVID) from the SPIRE agent on the node.
  workload_api:
    socket: {{ include "credgate.spireSocket" $ | quote }}
    {{- with .spiffeID }}
    spiffe_id: {{ . | quote }}
    {{- end }}
    start_timeout: {{ .startTimeout }}
  {{- end }}
  {{- end }}
  require_spiffe: {{ $m.requireSPIFFE }}
  reload_interval: {{ $m.reloadInterval }}
{{- end }}
{{- $j := $id.jwt }}
{{- if or $j.kubernetes.enabled $j.issuers }}
jwt:
  clock_skew: {{ $j.clockSkew }}
  max_token_bytes: {{ $j.maxTokenBytes }}
  cache_size: {{ $j.cacheSize }}
  issuers:
    {{- with $j.kubernetes }}
    {{- if .enabled }}
    # The cluster's service-account tokens, checked with the API server's keys.
    - issuer: {{ .issuer | quote }}
      profile: kubernetes
      audiences: {{ toJson .audiences }}
      {{- if .discovery }}
      discovery_url: {{ printf "%s/.well-known/openid-configuration" $api | quote }}
      {{- else }}
      jwks_url: {{ printf "%s/openid/v1/jwks" $api | quote }}
      {{- end }}
      ca_file: {{ $kube }}/ca.crt
      bearer_token_file: {{ $kube }}/token
    {{- end }}
    {{- end }}
    {{- range $j.issuers }}
    - {{ include "credgate.issuer" . | nindent 6 | trim }}
    {{- end }}
{{- end }}
{{- with $id.tokenReview }}
{{- if .enabled }}
kubernetes:
  api_server: {{ $api | quote }}
  ca_file: {{ $kube }}/ca.crt
  token_file: {{ $kube }}/token
  audiences: {{ toJson .audiences }}
  {{- with .issuers }}
  issuers: {{ toJson . }}
  {{- end }}
  cache_ttl: {{ .cacheTTL }}
  timeout: {{ .timeout }}
{{- end }}
{{- end }}
{{- with $id.posture }}
{{- if and .file .url }}
{{- fail "identity.posture: set file or url, not both" }}
{{- end }}
{{- if or .file .url }}
posture:
  {{- if .file }}
  file: {{ .file | quote }}
  {{- else }}
  url: {{ .url | quote }}
  {{- end }}
  {{- with .caFile }}
  ca_file: {{ . | quote }}
  {{- end }}
  {{- with .bearerTokenFile }}
  bearer_token_file: {{ . | quote }}
  {{- end }}
  interval: {{ .interval }}
  timeout: {{ .timeout }}
  max_age: {{ .maxAge }}
{{- end }}
{{- end }}
{{- end }}
