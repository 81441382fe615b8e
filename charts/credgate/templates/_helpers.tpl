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
  reload_interval: {{ .Values.tls.reloadInterval }}
{{- end }}
{{- with $c.proxyProtocol }}
{{- range $k, $p := dict "listen" .listen "tlsListen" .tlsListen }}
{{- if and $p.required (not $p.trusted) }}
{{- fail (printf "config.proxyProtocol.%s.required is set but trusted is empty; list the load balancers' CIDRs in trusted, or unset required" $k) }}
{{- end }}
{{- range $p.trusted }}
{{- if or (eq . "0.0.0.0/0") (eq . "::/0") }}
{{- fail (printf "config.proxyProtocol.%s.trusted: %s trusts every peer, so any client could write its own PROXY header and choose its source address; list only the load balancers' addresses" $k .) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (not $.Values.tls.enabled) (or .tlsListen.trusted .tlsListen.required) }}
{{- fail "config.proxyProtocol.tlsListen is set but tls.enabled is false; enable tls or remove it" }}
{{- end }}
proxy_protocol:
  listen:
    trusted: {{ .listen.trusted | toJson }}
    required: {{ .listen.required }}
  {{- if $.Values.tls.enabled }}
  tls_listen:
    trusted: {{ .tlsListen.trusted | toJson }}
    required: {{ .tlsListen.required }}
  {{- end }}
{{- end }}
admin_listen: ":{{ .Values.adminPort }}"
policy: policy/{{ .Values.policyKey }}
ca:
  cert: ca/tls.crt
  key: ca/tls.key
  leaf_ttl: {{ $c.ca.leafTTL }}
  leaf_cache_size: {{ $c.ca.leafCacheSize }}
  reload_interval: {{ $c.ca.reloadInterval }}
session_tickets:
  enabled: {{ $c.sessionTickets.enabled }}
  rotation: {{ $c.sessionTickets.rotation }}
upstream:
  {{- if $c.upstream.caBundleConfigMap }}
  ca_bundle: upstream-ca/{{ $c.upstream.caBundleKey }}
  {{- end }}
  dial_timeout: {{ $c.upstream.dialTimeout }}
  tls_handshake_timeout: {{ $c.upstream.tlsHandshakeTimeout }}
  response_header_timeout: {{ $c.upstream.responseHeaderTimeout }}
  response_idle_timeout: {{ $c.upstream.responseIdleTimeout }}
  idle_conn_timeout: {{ $c.upstream.idleConnTimeout }}
  max_idle_conns_per_host: {{ $c.upstream.maxIdleConnsPerHost }}
  max_idle_conns: {{ int64 $c.upstream.maxIdleConns }}
  max_response_header_bytes: {{ $c.upstream.maxResponseHeaderBytes | int64 }}
  http2: {{ $c.upstream.http2 }}
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
  write_idle_timeout: {{ $c.limits.writeIdleTimeout }}
  in_flight_identity_grace: {{ $c.limits.inFlightIdentityGrace }}
  {{- if not (kindIs "invalid" $c.limits.maxConnections) }}
  max_connections: {{ $c.limits.maxConnections | int64 }}
  {{- end }}
  {{- if not (kindIs "invalid" $c.limits.maxConnectionsPerSource) }}
  max_connections_per_source: {{ $c.limits.maxConnectionsPerSource | int64 }}
  {{- end }}
  batch_buffer_bytes: {{ $c.limits.batchBufferBytes | int64 }}
  long_lived:
    idle_timeout: {{ $c.limits.longLived.idleTimeout }}
    max_lifetime: {{ $c.limits.longLived.maxLifetime }}
cache:
  default_ttl: {{ $c.cache.defaultTTL }}
  max_ttl: {{ $c.cache.maxTTL }}
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
    password_file: redis-password/{{ .passwordSecret.key }}
    {{- end }}
    db: {{ .db }}
    {{- if .tls }}
    tls:
      enabled: true
      {{- with .tlsServerName }}
      server_name: {{ . | quote }}
      {{- end }}
    {{- end }}
    timeout: {{ .timeout }}
    lock_ttl: {{ .lockTTL }}
    expiry_skew: {{ .expirySkew }}
    encryption_keys:
    {{- range $i, $k := .encryptionKeys }}
      - {id: {{ $k.id | quote }}, file: redis-key-{{ $i }}/{{ $k.secretKey }}}
    {{- end }}
  {{- end }}
  {{- end }}
audit:
  {{- include "credgate.auditConfig" . | nindent 2 }}
log:
  level: {{ $c.logLevel }}
shutdown_timeout: {{ $c.shutdownTimeout }}
admin:
  {{- if .Values.admin.tokenSecret.name }}
  token_file: admin-token/{{ .Values.admin.tokenSecret.key }}
  {{- end }}
  {{- if .Values.admin.stateFile }}
  state_file: {{ .Values.admin.stateFile | quote }}
  {{- end }}
  {{- if .Values.redis.enabled }}
  resync_interval: {{ .Values.admin.resyncInterval }}
  {{- end }}
  max_switches: {{ int64 .Values.admin.maxSwitches }}
  {{- with .Values.admin.tls }}
  {{- if .enabled }}
  tls:
    cert: admin-tls/tls.crt
    key: admin-tls/tls.key
    {{- if .clientCAConfigMap }}
    client_ca: admin-client-ca/{{ .clientCAKey }}
    {{- end }}
    reload_interval: {{ .reloadInterval }}
  {{- end }}
  {{- end }}
  {{- with .Values.admin.limits }}
  read_header_timeout: {{ .readHeaderTimeout }}
  read_timeout: {{ .readTimeout }}
  write_timeout: {{ .writeTimeout }}
  idle_timeout: {{ .idleTimeout }}
  max_header_bytes: {{ int64 .maxHeaderBytes }}
  max_connections: {{ int64 .maxConnections }}
  {{- end }}
{{- with include "credgate.identityConfig" . | trim }}
identity:
  {{- . | nindent 2 }}
{{- end }}
{{- with $c.tracing }}
{{- if .enabled }}
tracing:
  enabled: true
  {{- include "credgate.otlpEndpoint" (list "tracing" .) | nindent 2 }}
  sampling_ratio: {{ .samplingRatio }}
  client_sampling: {{ .clientSampling | quote }}
  service_name: {{ .serviceName | quote }}
{{- end }}
{{- end }}
{{- with $c.runTokens }}
{{- if .enabled }}
run_tokens:
  workloads: {{ toJson .workloads }}
  issuer: {{ .issuer | quote }}
  audience: {{ .audience | quote }}
  ttl: {{ .ttl }}
  max_ttl: {{ .maxTTL }}
  algorithm: {{ .algorithm }}
  {{- if .keySecret.name }}
  key_file: run-tokens/{{ .keySecret.key }}
  {{- end }}
  rotate_interval: {{ .rotateInterval }}
{{- end }}
{{- end }}
{{- end }}

{{/* The audit: block of the gateway config (docs/config.md#audit-log-shutdown). */}}
{{- define "credgate.auditConfig" -}}
{{- $a := .Values.config.audit -}}
output: {{ .Values.config.auditOutput | quote }}
{{- with $a.replica }}
replica: {{ . | quote }}
{{- end }}
chain: {{ $a.chain }}
{{- with $a.checkpoint }}
{{- if or .keySecret.name .vaultTransit.key }}
checkpoint:
  {{- if .keySecret.name }}
  key_file: audit-checkpoint/{{ .keySecret.key }}
  {{- else }}
  {{- with .vaultTransit }}
  signer:
    vault_transit:
      server:
        {{- with .address }}
        address: {{ . | quote }}
        {{- end }}
        {{- with .namespace }}
        namespace: {{ . | quote }}
        {{- end }}
        {{- with .caFile }}
        ca_cert: {{ . | quote }}
        {{- end }}
        auth:
          method: {{ .auth.method }}
          {{- with .auth.mount }}
          mount: {{ . | quote }}
          {{- end }}
          role: {{ .auth.role | quote }}
          # The projected service-account token (serviceAccountToken).
          token_file: {{ printf "%s/token" (trimSuffix "/" $.Values.serviceAccountToken.mountPath) | quote }}
      mount: {{ .mount | quote }}
      key: {{ .key | quote }}
  {{- end }}
  {{- end }}
  lines: {{ .lines }}
  every: {{ .every }}
{{- end }}
{{- end }}
{{- with $a.rotate }}
{{- if or .maxBytes .every }}
rotate:
  {{- with .maxBytes }}
  max_bytes: {{ int64 . }}
  {{- end }}
  {{- with .every }}
  every: {{ . }}
  {{- end }}
{{- end }}
{{- end }}
on_stall: {{ $a.onStall }}
buffer_bytes: {{ int64 $a.bufferBytes }}
stall_timeout: {{ $a.stallTimeout }}
{{- if $a.fingerprintKeySecret.name }}
fingerprint_key_file: audit-fingerprint/{{ $a.fingerprintKeySecret.key }}
{{- end }}
{{- with $a.otlp }}
{{- if .endpoint }}
otlp:
  {{- include "credgate.otlpEndpoint" (list "audit-otlp" .) | nindent 2 }}
  service_name: {{ .serviceName | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The OTLP receiver keys shared by tracing: and audit.otlp:
(internal/otlp.Endpoint); args: (list NAME VALUES), NAME being what the
CA and header directories are named after. Header values are files of
their Secrets (credgate.configFiles), never written here. */}}
{{- define "credgate.otlpEndpoint" -}}
{{- $name := index . 0 }}{{ $o := index . 1 -}}
endpoint: {{ $o.endpoint | quote }}
protocol: {{ $o.protocol }}
insecure: {{ $o.insecure }}
{{- if $o.caConfigMap }}
ca: {{ $name }}-ca/{{ $o.caKey }}
{{- end }}
{{- with $o.headers }}
headers:
  {{- range $i, $h := keys . | sortAlpha }}
  {{ $h | quote }}: {file: {{ printf "%s-header-%d/%s" $name $i (get $o.headers $h).secretKey | quote }}}
  {{- end }}
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
  "refreshInterval" "refresh_interval" "minRefetchInterval" "min_refetch_interval" "fetchTimeout" "fetch_timeout" "maxLifetime" "max_lifetime" -}}
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
  cache_size: {{ int64 .cacheSize }}
  negative_cache_ttl: {{ .negativeCacheTTL }}
  negative_cache_size: {{ int64 .negativeCacheSize }}
  review_rate: {{ .reviewRate }}
  review_burst: {{ int64 .reviewBurst }}
  review_sources: {{ int64 .reviewSources }}
  timeout: {{ .timeout }}
  {{- if .allowTokensWithoutExp }}
  allow_tokens_without_exp: true
  {{- end }}
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

{{/* The Secrets and ConfigMaps that config.audit, config.tracing,
config.runTokens and redis name, as (list VOLUME SECRET-OR-"" CONFIGMAP-OR-""
KEY): each is mounted as a directory at /etc/credgate/VOLUME, where the
gateway config names the file. Secrets reach the gateway only so, never
through the environment (e2e/helm TestSecretsAreFiles). Read at start: a
change needs a restart. */}}
{{- define "credgate.configFiles" -}}
{{- $c := .Values.config }}
{{- $out := list }}
{{- with .Values.redis }}
{{- if .enabled }}
{{- range $i, $k := .encryptionKeys }}{{ $out = append $out (list (printf "redis-key-%d" $i) $k.secretName "" $k.secretKey) }}{{ end }}
{{- if .passwordSecret.name }}{{ $out = append $out (list "redis-password" .passwordSecret.name "" .passwordSecret.key) }}{{ end }}
{{- end }}
{{- end }}
{{- range $name, $o := dict "tracing" (ternary $c.tracing.headers dict $c.tracing.enabled) "audit-otlp" (ternary $c.audit.otlp.headers dict (not (empty $c.audit.otlp.endpoint))) }}
{{- range $i, $h := keys $o | sortAlpha }}
{{- $s := get $o $h }}
{{- $out = append $out (list (printf "%s-header-%d" $name $i) $s.secretName "" $s.secretKey) }}
{{- end }}
{{- end }}
{{- with $c.audit.checkpoint.keySecret }}{{ if .name }}{{ $out = append $out (list "audit-checkpoint" .name "" .key) }}{{ end }}{{ end }}
{{- with $c.audit.fingerprintKeySecret }}{{ if .name }}{{ $out = append $out (list "audit-fingerprint" .name "" .key) }}{{ end }}{{ end }}
{{- with $c.audit.otlp }}{{ if and .endpoint .caConfigMap }}{{ $out = append $out (list "audit-otlp-ca" "" .caConfigMap .caKey) }}{{ end }}{{ end }}
{{- with $c.tracing }}{{ if and .enabled .caConfigMap }}{{ $out = append $out (list "tracing-ca" "" .caConfigMap .caKey) }}{{ end }}{{ end }}
{{- with $c.runTokens }}{{ if and .enabled .keySecret.name }}{{ $out = append $out (list "run-tokens" .keySecret.name "" .keySecret.key) }}{{ end }}{{ end }}
{{- toJson $out }}
{{- end }}

{{/* volumeMounts of credgate.configFiles. */}}
{{- define "credgate.configFileMounts" -}}
{{- range include "credgate.configFiles" . | fromJsonArray }}
- name: {{ index . 0 }}
  mountPath: /etc/credgate/{{ index . 0 }}
  readOnly: true
{{- end }}
{{- end }}

{{/* volumes of credgate.configFiles: Secret keys mode 0440, never in the
config (so the checksum annotation does not depend on them). */}}
{{- define "credgate.configFileVolumes" -}}
{{- range include "credgate.configFiles" . | fromJsonArray }}
- name: {{ index . 0 }}
  {{- if index . 1 }}
  secret:
    secretName: {{ index . 1 }}
    defaultMode: 0440
  {{- else }}
  configMap:
    name: {{ index . 2 }}
  {{- end }}
    items:
      - key: {{ index . 3 }}
        path: {{ index . 3 }}
{{- end }}
{{- end }}

{{/* The port of a URL: its own, else 443 for https and 80 for http. */}}
{{- define "credgate.urlPort" -}}
{{- $u := urlParse . }}
{{- regexFind ":[0-9]+$" $u.host | trimPrefix ":" | default (ternary "443" "80" (eq $u.scheme "https")) }}
{{- end }}

{{/* The ports of the endpoints besides upstreams and the API server that
the gateway config names and that may be in the cluster: the OTLP
receivers (config.tracing, config.audit.otlp), Vault (the checkpoint
signer), the JWKS and discovery URLs of identity.jwt.issuers and the
posture feed's url, as a JSON list of distinct port numbers, for the
gateway's NetworkPolicy (e2e/helm TestNetworkPolicyAllowsEndpoints). */}}
{{- define "credgate.endpointPorts" -}}
{{- $c := .Values.config }}
{{- $ports := list }}
{{- if and $c.tracing.enabled $c.tracing.endpoint }}{{ $ports = append $ports (regexFind "[0-9]+$" $c.tracing.endpoint) }}{{ end }}
{{- with $c.audit.otlp.endpoint }}{{ $ports = append $ports (regexFind "[0-9]+$" .) }}{{ end }}
{{- with $c.audit.checkpoint.vaultTransit }}
{{- if and .key .address }}
{{- $ports = append $ports (include "credgate.urlPort" .address) }}
{{- end }}
{{- end }}
{{- range .Values.identity.jwt.issuers }}
{{- with .jwksURL }}{{ $ports = append $ports (include "credgate.urlPort" .) }}{{ end }}
{{- with .discoveryURL }}{{ $ports = append $ports (include "credgate.urlPort" .) }}{{ end }}
{{- end }}
{{- with .Values.identity.posture.url }}{{ $ports = append $ports (include "credgate.urlPort" .) }}{{ end }}
{{- toJson ($ports | uniq) }}
{{- end }}

{{/*
credgate.requireWritable fails the render unless the file at an absolute
path (list $ VALUE-NAME PATH), which each gateway process writes on its own,
lies on a writable volume from extraVolumeMounts (the root filesystem is
read-only), and that volume is not a PersistentVolumeClaim every replica
would mount (more than one replica, or autoscaling): replicas would write
one file.
*/}}
{{- define "credgate.requireWritable" -}}
{{- $root := index . 0 }}{{ $name := index . 1 }}{{ $path := index . 2 }}
{{- $dir := dir $path }}
{{- $writable := false }}
{{- $claim := "" }}
{{- range $root.Values.extraVolumeMounts }}
{{- if and (not .readOnly) (or (eq $dir (trimSuffix "/" .mountPath)) (hasPrefix (printf "%s/" (trimSuffix "/" .mountPath)) $dir)) }}
{{- $writable = true }}
{{- $mount := .name }}
{{- range $root.Values.extraVolumes }}
{{- if and (eq .name $mount) .persistentVolumeClaim }}{{ $claim = .persistentVolumeClaim.claimName }}{{ end }}
{{- end }}
{{- end }}
{{- end }}
{{- if not $writable }}
{{- fail (printf "%s %s: the root filesystem is read-only; mount a writable volume (a PersistentVolumeClaim, or an emptyDir) at %s or above with extraVolumes and extraVolumeMounts" $name $path $dir) }}
{{- end }}
{{- if and $claim (or $root.Values.autoscaling.enabled (gt (int $root.Values.replicaCount) 1)) }}
{{- fail (printf "%s %s is on the PersistentVolumeClaim %s, which every replica of the Deployment mounts (replicaCount %d%s): the replicas would write one file; use an emptyDir (one per pod), or replicaCount=1 without autoscaling" $name $path $claim (int $root.Values.replicaCount) (ternary ", autoscaling.enabled" "" $root.Values.autoscaling.enabled)) }}
{{- end }}
{{- end }}

{{/*
credgate.seconds turns a Go duration ("90s", "1m30s", "500ms", "1.5h";
values.schema.json's duration pattern) into whole seconds, rounded up.
*/}}
{{- define "credgate.seconds" -}}
{{- include "credgate.durationSeconds" . | float64 | ceil | int }}
{{- end }}

{{/* credgate.durationSeconds: a Go duration in seconds, exactly (a float). */}}
{{- define "credgate.durationSeconds" -}}
{{- $units := dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 }}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h)" (toString .) -1 }}
{{- $n := regexFind "^[0-9]+(\\.[0-9]+)?" . }}
{{- $total = addf $total (mulf (float64 $n) (get $units (trimPrefix $n .))) }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
credgate.checkGatewayRanges fails the render on a value the gateway's own
config validation refuses at start (gateway/config.go, identity,
run_tokens), so that a bad value is an install error naming the value,
not pods that crash-loop: each duration with the range the gateway
accepts (0 is the gateway's default wherever it is allowed), the settings
that must agree with each other, the Redis key ids, and the resolve:
addresses. Only settings the chart renders are checked, as the gateway
checks only what its config has. e2e/helm TestSchemaAgreesWithGateway
renders values on both sides of each boundary and asks the real gateway.
*/}}
{{- define "credgate.checkGatewayRanges" -}}
{{- $c := .Values.config }}
{{- $dur := list }}
{{- $soon := "too short to be meant; they are usually seconds to hours" }}
{{- $dur = append $dur (list "config.ca.leafTTL" $c.ca.leafTTL 60.0 34300800.0 "1m" "9528h (397 days)" "clients refuse longer-lived server certificates (the CA/Browser Forum's limit is 398 days), and a shorter one would be signed again at nearly every handshake") }}
{{- range $k, $v := dict "config.upstream.responseIdleTimeout" $c.upstream.responseIdleTimeout "config.limits.bodyIdleTimeout" $c.limits.bodyIdleTimeout "config.limits.writeIdleTimeout" $c.limits.writeIdleTimeout "config.limits.inFlightIdentityGrace" $c.limits.inFlightIdentityGrace "config.limits.longLived.idleTimeout" $c.limits.longLived.idleTimeout "config.limits.longLived.maxLifetime" $c.limits.longLived.maxLifetime }}
{{- $dur = append $dur (list $k $v 0.1 0.0 "100ms" "" $soon) }}
{{- end }}
{{- $dur = append $dur (list "config.cache.maxTTL" $c.cache.maxTTL 1.0 0.0 "1s" "" "it is usually hours") }}
{{- if $c.runTokens.enabled }}
{{- $dur = append $dur (list "config.runTokens.ttl" $c.runTokens.ttl 60.0 0.0 "1m" "" "a token must outlive the command it starts") }}
{{- $dur = append $dur (list "config.runTokens.rotateInterval" $c.runTokens.rotateInterval 60.0 0.0 "1m" "" "a key must outlive the tokens it signs") }}
{{- end }}
{{- if or .Values.identity.jwt.kubernetes.enabled .Values.identity.jwt.issuers }}
{{- $dur = append $dur (list "identity.jwt.clockSkew" .Values.identity.jwt.clockSkew 0.0 300.0 "0s" "5m" "a longer leeway accepts tokens long expired") }}
{{- end }}
{{- range $dur }}
{{- $name := index . 0 }}{{ $v := index . 1 }}{{ $min := index . 2 }}{{ $max := index . 3 }}
{{- $s := include "credgate.durationSeconds" $v | float64 }}
{{- if and (gt $s 0.0) (or (lt $s $min) (and (gt $max 0.0) (gt $s $max))) }}
{{- fail (printf "%s %s: use %s, or 0s for the gateway's default (%s); the gateway would refuse it at start" $name $v (ternary (printf "at least %s" (index . 4)) (printf "%s to %s" (index . 4) (index . 5)) (eq (index . 5) "")) (index . 6)) }}
{{- end }}
{{- end }}
{{- /* Settings that must agree (0s: the gateway's default). */}}
{{- $ll := $c.limits.longLived }}
{{- $life := include "credgate.durationSeconds" $ll.maxLifetime | float64 }}
{{- if eq $life 0.0 }}{{ $life = 86400.0 }}{{ end }}
{{- if gt (include "credgate.durationSeconds" $ll.idleTimeout | float64) $life }}
{{- fail (printf "config.limits.longLived.idleTimeout %s is longer than maxLifetime %s and would never apply; shorten it or raise maxLifetime" $ll.idleTimeout $ll.maxLifetime) }}
{{- end }}
{{- $maxTTL := include "credgate.durationSeconds" $c.cache.maxTTL | float64 }}
{{- if eq $maxTTL 0.0 }}{{ $maxTTL = 86400.0 }}{{ end }}
{{- if gt (include "credgate.durationSeconds" $c.cache.defaultTTL | float64) $maxTTL }}
{{- fail (printf "config.cache.defaultTTL %s is longer than config.cache.maxTTL %s, which caps it; shorten defaultTTL or raise maxTTL" $c.cache.defaultTTL $c.cache.maxTTL) }}
{{- end }}
{{- with $c.runTokens }}
{{- if .enabled }}
{{- $ttl := include "credgate.durationSeconds" .ttl | float64 }}{{ if eq $ttl 0.0 }}{{ $ttl = 900.0 }}{{ end }}
{{- $max := include "credgate.durationSeconds" .maxTTL | float64 }}{{ if eq $max 0.0 }}{{ $max = 43200.0 }}{{ end }}
{{- if lt $max $ttl }}
{{- fail (printf "config.runTokens.maxTTL %s is shorter than config.runTokens.ttl %s; raise maxTTL or shorten ttl" .maxTTL .ttl) }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.redis.enabled }}
{{- $ids := dict }}
{{- range $i, $k := .Values.redis.encryptionKeys }}
{{- if hasKey $ids (toString $k.id) }}
{{- fail (printf "redis.encryptionKeys[%d]: id %q is also the id of redis.encryptionKeys[%d]; give each key its own id (the id is stored with every sealed entry)" $i (toString $k.id) (get $ids (toString $k.id))) }}
{{- end }}
{{- $_ := set $ids (toString $k.id) $i }}
{{- end }}
{{- end }}
{{- range $from, $to := $c.resolve }}
{{- $t := toString $to }}
{{- $host := regexReplaceAll ":[0-9]+$" $t "" }}
{{- $port := regexFind "[0-9]+$" $t }}
{{- $v4 := regexMatch "^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$" $host }}
{{- $v6 := and (hasPrefix "[" $host) (hasSuffix "]" $host) (include "credgate.ipv6Full" (trimSuffix "]" (trimPrefix "[" $host)) | ne "") }}
{{- if not (and (regexMatch ":[0-9]+$" $t) (or $v4 $v6) (le (int $port) 65535) (ge (int $port) 1)) }}
{{- fail (printf "config.resolve %q: %q must be an IP address and port (e.g. \"10.20.0.5:8443\" or \"[2001:db8::5]:8443\"), not a name: the gateway dials it as written" $from $t) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
credgate.startWait is the longest the gateway may take, in seconds, before
its admin listener (/healthz) answers, as a dict {seconds, from}: `serve`
first waits for the SPIRE agent's first SVID (spire.startTimeout), then
fetches each JWKS it reaches over the network (the Kubernetes API server's,
issuers with jwksURL or discoveryURL: fetchTimeout each) and the posture
feed's url (identity.posture.timeout), one after the other. The start-up
probe must cover it, or the liveness probe would kill a gateway that is
still waiting (before it can say why). e2e/helm's TestTimeBudgets computes
the same from the rendered config.
*/}}
{{- define "credgate.startWait" -}}
{{- $s := 0 }}{{ $from := list }}
{{- if .Values.spire.enabled }}
{{- $s = add $s (include "credgate.seconds" .Values.spire.startTimeout) }}{{ $from = append $from (printf "spire.startTimeout %s" .Values.spire.startTimeout) }}
{{- end }}
{{- if .Values.identity.jwt.kubernetes.enabled }}
{{- $s = add $s 10 }}{{ $from = append $from "identity.jwt.kubernetes (a 10s JWKS fetch)" }}
{{- end }}
{{- range $i, $is := .Values.identity.jwt.issuers }}
{{- if or $is.jwksURL $is.discoveryURL }}
{{- $t := $is.fetchTimeout | default "10s" }}
{{- $s = add $s (include "credgate.seconds" $t) }}{{ $from = append $from (printf "identity.jwt.issuers[%d].fetchTimeout %s" $i $t) }}
{{- end }}
{{- end }}
{{- with .Values.identity.posture }}
{{- if .url }}
{{- $s = add $s (include "credgate.seconds" .timeout) }}{{ $from = append $from (printf "identity.posture.timeout %s" .timeout) }}
{{- end }}
{{- end }}
{{- toJson (dict "seconds" $s "from" (join " + " $from)) }}
{{- end }}

{{/*
credgate.startupProbe is the start-up probe's timing: startupProbe's
values, with failureThreshold (when null) enough periods to cover
credgate.startWait plus 10s for the rest of the start, and never fewer than
15. An explicit failureThreshold that does not cover it fails the render.
*/}}
{{- define "credgate.startupProbe" -}}
{{- $p := .Values.startupProbe }}
{{- $w := include "credgate.startWait" . | fromJson }}
{{- $need := add (int $w.seconds) 10 }}
{{- $period := int $p.periodSeconds }}
{{- $delay := int $p.initialDelaySeconds }}
{{- $threshold := 0 }}
{{- if kindIs "invalid" $p.failureThreshold }}
{{- $threshold = max 15 (div (add (sub $need $delay) $period -1) $period) }}
{{- else }}
{{- $threshold = int $p.failureThreshold }}
{{- $window := add $delay (mul $period $threshold) }}
{{- if lt $window $need }}
{{- fail (printf "startupProbe gives the gateway %ds to start (initialDelaySeconds + periodSeconds × failureThreshold), but it may take %ds before /healthz answers (%s): the liveness probe would kill it while it waits; set startupProbe.failureThreshold to at least %d, or null to have it computed" $window $need (list $w.from "10s for the rest of the start" | compact | join " + ") (div (add (sub $need $delay) $period -1) $period)) }}
{{- end }}
{{- end }}
initialDelaySeconds: {{ $delay }}
periodSeconds: {{ $period }}
timeoutSeconds: {{ $p.timeoutSeconds }}
failureThreshold: {{ $threshold }}
{{- end }}

{{/*
NetworkPolicy egress rules to DNS on 53/UDP and 53/TCP: the cluster DNS pods
(networkPolicy.dns.namespace, podLabels) and each address of
networkPolicy.dns.nodeLocalAddresses as a single-address ipBlock (NodeLocal
DNSCache listens on a link-local address, 169.254.20.10 by default, inside
the range the gateway's upstream rule excludes). Refuses anything but a
single address, and the metadata services' addresses, so the value cannot
reopen them.
*/}}
{{- define "credgate.dnsEgress" -}}
{{- $dns := .Values.networkPolicy.dns }}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ $dns.namespace }}
      podSelector:
        matchLabels:
          {{- toYaml $dns.podLabels | nindent 10 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- with $dns.nodeLocalAddresses }}
- to:
    {{- range . }}
    {{- $a := toString . }}
    {{- $v4 := regexMatch "^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$" $a }}
    {{- $v6 := "" }}
    {{- if not $v4 }}{{ $v6 = include "credgate.ipv6Full" $a }}{{ end }}
    {{- if not (or $v4 $v6) }}
    {{- fail (printf "networkPolicy.dns.nodeLocalAddresses: %q is not a single IPv4 or IPv6 address; name the node-local DNS cache's listen address (NodeLocal DNSCache: 169.254.20.10), not a range" $a) }}
    {{- end }}
    {{- /* Compared by value: IPv6 written in full whatever its spelling,
           and the IPv4 ones also as IPv4-mapped IPv6 addresses. */}}
    {{- $metaV4 := list "169.254.169.254" "100.100.100.200" "169.254.170.2" "169.254.170.23" }}
    {{- $metaV6 := list (include "credgate.ipv6Full" "fd00:ec2::254") (include "credgate.ipv6Full" "fe80::a9fe:a9fe") }}
    {{- range $metaV4 }}{{ $metaV6 = append $metaV6 (include "credgate.ipv6Full" (printf "::ffff:%s" .)) }}{{ end }}
    {{- if or (and $v4 (has $a $metaV4)) (and $v6 (has $v6 $metaV6)) }}
    {{- fail (printf "networkPolicy.dns.nodeLocalAddresses: %s is a cloud metadata service, which the gateway must not reach; name the node-local DNS cache's address (NodeLocal DNSCache: 169.254.20.10)" $a) }}
    {{- end }}
    - ipBlock:
        cidr: {{ $a }}/{{ ternary 32 128 $v4 }}
    {{- end }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}
{{- end }}{{- /*
credgate.ipv6Full: an IPv6 address (no zone, no prefix length; the forms
that end in an IPv4 address, ::ffff:169.254.169.254, included) written in
full, eight groups of four lower-case hex digits joined by ":", or ""
when the argument is not one. Checks compare addresses in this form, so
that another spelling of one (leading zeros, upper case, "::" or not, an
IPv4 tail) cannot pass a check written with one spelling.
*/}}
{{- define "credgate.ipv6Full" -}}
{{- $a := lower (toString .) -}}
{{- $halves := splitList "::" $a -}}
{{- $ok := and (regexMatch "^[0-9a-f:.]+$" $a) (contains ":" $a) (le (len $halves) 2) -}}
{{- $sides := list -}}
{{- range $halves -}}
{{- $sides = append $sides (ternary (list) (splitList ":" .) (eq . "")) -}}
{{- end -}}
{{- $tail := last $sides -}}
{{- if and $ok $tail (contains "." (last $tail)) -}}
{{- $o := splitList "." (last $tail) -}}
{{- if regexMatch "^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$" (last $tail) -}}
{{- $tail = concat (initial $tail) (list (printf "%02x%02x" (atoi (index $o 0)) (atoi (index $o 1))) (printf "%02x%02x" (atoi (index $o 2)) (atoi (index $o 3)))) -}}
{{- $sides = append (initial $sides) $tail -}}
{{- else -}}
{{- $ok = false -}}
{{- end -}}
{{- end -}}
{{- $n := 0 -}}
{{- range $sides }}{{ $n = add $n (len .) }}{{ end -}}
{{- $groups := list -}}
{{- if and $ok (eq (len $sides) 1) -}}
{{- $ok = eq (int $n) 8 -}}
{{- $groups = index $sides 0 -}}
{{- else if $ok -}}
{{- $ok = le (int $n) 7 -}}
{{- if $ok -}}
{{- $groups = index $sides 0 -}}
{{- range until (int (sub 8 $n)) }}{{ $groups = append $groups "0" }}{{ end -}}
{{- $groups = concat $groups (index $sides 1) -}}
{{- end -}}
{{- end -}}
{{- $full := list -}}
{{- range $groups -}}
{{- if not (regexMatch "^[0-9a-f]{1,4}$" .) }}{{ $ok = false }}{{ end -}}
{{- $full = append $full (printf "%04s" .) -}}
{{- end -}}
{{- if $ok }}{{ join ":" $full }}{{ end -}}
{{- end -}}



{{/*
credgate.stopBudget is the longest a stopping pod may take, in seconds,
from the start of its termination to the gateway's exit, as a dict
{seconds, from}: the preStop sleep (preStopSleepSeconds), then, after
SIGTERM, the drain (config.shutdownTimeout), then the gateway's close
(gateway/gateway.go shutdown and Close, gateway/audit.go Close): requests
cut at the end of the drain get 1s to write their answer and audit line,
tunnels and WebSockets cut then 1s for their audit lines, the audit output
up to 10s to take the last lines and the final checkpoint, the policy's
providers up to 5s for their cleanup (Vault's revoke_on_cleanup revoking
leases; policy.Store.Close, bounded by internal/module CleanupTimeout, cut
and logged beyond it), and with
config.tracing up to 5s to export the last spans. terminationGracePeriodSeconds
must be above it, or kubelet's SIGKILL cuts the drain or the audit tail
(and the log line saying what was lost). e2e/helm's TestTimeBudgets reads
these steps from the gateway's source and computes the same from the
rendered config.
*/}}
{{- define "credgate.stopBudget" -}}
{{- $sleep := int .Values.preStopSleepSeconds }}
{{- $drain := include "credgate.seconds" .Values.config.shutdownTimeout | int }}
{{- $s := add $sleep $drain 17 }}
{{- $from := list (printf "preStopSleepSeconds %d" $sleep) (printf "config.shutdownTimeout %s" .Values.config.shutdownTimeout) "17s for the gateway's close (answers and audit lines of what the drain cut, the audit output's last lines, the policy's providers' cleanup)" }}
{{- if .Values.config.tracing.enabled }}
{{- $s = add $s 5 }}{{ $from = append $from "5s for config.tracing's last spans" }}
{{- end }}
{{- toJson (dict "seconds" $s "from" (join " + " $from)) }}
{{- end }}

{{/*
credgate.terminationGracePeriod is terminationGracePeriodSeconds: the value,
or (when null) credgate.stopBudget plus 2s for the rest of the exit. An
explicit value not above the budget fails the render.
*/}}
{{- define "credgate.terminationGracePeriod" -}}
{{- $b := include "credgate.stopBudget" . | fromJson }}
{{- $need := int $b.seconds }}
{{- $g := .Values.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $g }}
{{- add $need 2 }}
{{- else if le (int $g) $need }}
{{- fail (printf "terminationGracePeriodSeconds %d is not above the %ds a stopping gateway may take (%s): kubelet would kill it (SIGKILL) while it drains or writes its last audit lines; set terminationGracePeriodSeconds to at least %d, or null to have it computed, or shorten config.shutdownTimeout or preStopSleepSeconds" (int $g) $need $b.from (add $need 1)) }}
{{- else }}
{{- int $g }}
{{- end }}
{{- end }}

{{/*
credgate.portEgress: NetworkPolicy egress rules to endpoints that may be
in the cluster (the API server, Redis, OTLP receivers, Vault, JWKS and
posture URLs), args (list $ PORTS). They name ports only, since selectors
and ipBlocks do not reach in-cluster peers alike on every CNI; but port
80 is where the cloud metadata services listen (169.254.169.254 and the
others the upstream rule excludes), so an endpoint on port 80 is reached
only in the cluster's pods (any namespace) or through
networkPolicy.gateway.egressCIDRs, which exclude them (e2e/helm
TestNetworkPolicyRefusesMetadata).
*/}}
{{- define "credgate.portEgress" -}}
{{- $root := index . 0 }}
{{- $plain := list }}{{ $http := false }}
{{- range index . 1 }}{{ if eq (int .) 80 }}{{ $http = true }}{{ else }}{{ $plain = append $plain (int .) }}{{ end }}{{ end }}
{{- with $plain | uniq }}
- ports:
    {{- range . }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- if $http }}
- to:
    - namespaceSelector: {}
    {{- range $root.Values.networkPolicy.gateway.egressCIDRs }}
    - ipBlock:
        cidr: {{ .cidr }}
        {{- with .except }}
        except:
          {{- toYaml . | nindent 10 }}
        {{- end }}
    {{- end }}
  ports:
    - port: 80
      protocol: TCP
{{- end }}
{{- end }}
