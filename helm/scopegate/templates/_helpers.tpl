{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "scopegate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full resource name: <release>-<chart>, or the release name when it already holds the chart name. */}}
{{- define "scopegate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "scopegate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "scopegate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scopegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "scopegate.labels" -}}
helm.sh/chart: {{ include "scopegate.chart" . }}
{{ include "scopegate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: scopegate
{{- end -}}

{{- define "scopegate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "scopegate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret the gateway reads its keys from. */}}
{{- define "scopegate.secretName" -}}
{{- default (include "scopegate.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{/* "true" when rate limits are shared through Redis (redis.url or redis.existingSecret), else "". */}}
{{- define "scopegate.redisEnabled" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* upstreams.default.url: the app on localhost (sidecar) or the upstream Service (ingress). */}}
{{- define "scopegate.upstreamUrl" -}}
{{- if eq .Values.mode "sidecar" -}}
{{- printf "http://127.0.0.1:%d" (int .Values.app.port) -}}
{{- else if .Values.upstream.url -}}
{{- .Values.upstream.url -}}
{{- else -}}
{{- $svc := required "mode=ingress needs upstream.service.name (or upstream.url)" .Values.upstream.service.name -}}
{{- $ns := default .Release.Namespace .Values.upstream.service.namespace -}}
{{- printf "%s://%s.%s.svc:%d" .Values.upstream.scheme $svc $ns (int .Values.upstream.service.port) -}}
{{- end -}}
{{- end -}}

{{/*
The gateway.yaml written to the ConfigMap: `.Values.config` with the keys the chart owns set on a
copy: listen.port, admin.port, upstreams.default.url (ingress, sidecar) or forward_auth.path and
trusted_proxies (forward-auth, which forwards nothing and so has no upstreams), and
rate_limit.store/redis_url when Redis is configured. test/deploy/chart.test.ts renders it with real
helm and loads the result with scopegate's own config loader.
*/}}
{{- define "scopegate.gatewayConfig" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $listen := (get $cfg "listen") | default dict -}}
{{- $_ := set $listen "port" (int .Values.ports.proxy) -}}
{{- $_ := set $cfg "listen" $listen -}}
{{- $admin := (get $cfg "admin") | default dict -}}
{{- $_ := set $admin "port" (int .Values.ports.admin) -}}
{{- $_ := set $cfg "admin" $admin -}}
{{- if eq .Values.mode "forward-auth" -}}
{{- $_ := unset $cfg "upstreams" -}}
{{- $fa := (get $cfg "forward_auth") | default dict -}}
{{- $_ := set $fa "path" .Values.forwardAuth.path -}}
{{- $_ := set $cfg "forward_auth" $fa -}}
{{- with .Values.forwardAuth.trustedProxies -}}
{{- $_ := set $cfg "trusted_proxies" . -}}
{{- end -}}
{{- else -}}
{{- $upstreams := (get $cfg "upstreams") | default dict -}}
{{- $default := (get $upstreams "default") | default dict -}}
{{- $_ := set $default "url" (include "scopegate.upstreamUrl" .) -}}
{{- $_ := set $upstreams "default" $default -}}
{{- $_ := set $cfg "upstreams" $upstreams -}}
{{- end -}}
{{- if include "scopegate.redisEnabled" . -}}
{{- $rl := (get $cfg "rate_limit") | default dict -}}
{{- $_ := set $rl "store" "redis" -}}
{{- $_ := set $rl "redis_url" "${REDIS_URL}" -}}
{{- $_ := set $cfg "rate_limit" $rl -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Render-time checks that would otherwise only show up as a crash-looping or misbehaving pod. */}}
{{- define "scopegate.validate" -}}
{{- if not (has .Values.mode (list "ingress" "sidecar" "forward-auth")) -}}
{{- fail (printf "mode must be ingress, sidecar or forward-auth, got %q" .Values.mode) -}}
{{- end -}}
{{- if not (has .Values.runtime (list "node" "bun")) -}}
{{- fail (printf "runtime must be node or bun, got %q" .Values.runtime) -}}
{{- end -}}
{{- if eq .Values.mode "forward-auth" -}}
{{- if not (or .Values.forwardAuth.trustedProxies (hasKey .Values.config "trusted_proxies")) -}}
{{- fail "mode=forward-auth needs forwardAuth.trustedProxies: the CIDRs of the front proxy's pods (ingress-nginx, Envoy); scopegate answers every other peer 403 untrusted_proxy" -}}
{{- end -}}
{{- $nginx := .Values.forwardAuth.ingressNginx -}}
{{- if $nginx.enabled -}}
{{- if not $nginx.backend.service.name -}}
{{- fail "forwardAuth.ingressNginx.enabled needs forwardAuth.ingressNginx.backend.service.name (the Service the Ingress protects)" -}}
{{- end -}}
{{- range $k, $_ := $nginx.annotations -}}
{{- if hasPrefix "nginx.ingress.kubernetes.io/auth-cache" $k -}}
{{- fail (printf "forwardAuth.ingressNginx.annotations: %s is refused: a cached decision never reaches scopegate, so rate-limit windows stop counting and a revoked token stays allowed" $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.forwardAuth.envoyGateway.enabled (not .Values.forwardAuth.envoyGateway.targetRefs) -}}
{{- fail "forwardAuth.envoyGateway.enabled needs forwardAuth.envoyGateway.targetRefs (the HTTPRoute or Gateway to protect)" -}}
{{- end -}}
{{- else if or .Values.forwardAuth.ingressNginx.enabled .Values.forwardAuth.envoyGateway.enabled -}}
{{- fail (printf "forwardAuth.ingressNginx / forwardAuth.envoyGateway need mode=forward-auth (mode is %q)" .Values.mode) -}}
{{- end -}}
{{- if and (eq .Values.mode "sidecar") (not .Values.app.image.repository) -}}
{{- fail "mode=sidecar needs app.image.repository" -}}
{{- end -}}
{{- if and (eq .Values.mode "sidecar") (has (int .Values.app.port) (list (int .Values.ports.proxy) (int .Values.ports.admin))) -}}
{{- fail "mode=sidecar: app.port must differ from ports.proxy and ports.admin (they share the pod's network)" -}}
{{- end -}}
{{- $shutdownMs := 10000 -}}
{{- if hasKey .Values.config "shutdown_timeout_ms" -}}{{- $shutdownMs = int .Values.config.shutdown_timeout_ms -}}{{- end -}}
{{- $neededMs := add $shutdownMs (mul (int .Values.preStopSleepSeconds) 1000) -}}
{{- if le (mul (int .Values.terminationGracePeriodSeconds) 1000) $neededMs -}}
{{- fail (printf "terminationGracePeriodSeconds (%d s) must exceed preStopSleepSeconds + config.shutdown_timeout_ms (%d ms)" (int .Values.terminationGracePeriodSeconds) $neededMs) -}}
{{- end -}}
{{- $rl := .Values.config.rate_limit -}}
{{- $rlOn := false -}}
{{- if kindIs "map" $rl -}}
{{- $rlOn = or (not (hasKey $rl "enabled")) (get $rl "enabled") -}}
{{- end -}}
{{- $shared := or (include "scopegate.redisEnabled" .) (and (kindIs "map" $rl) (eq (toString (get $rl "store")) "redis")) -}}
{{- $multi := or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) -}}
{{- if and $rlOn $multi (not $shared) (not .Values.allowPerReplicaRateLimits) -}}
{{- fail "more than one replica with the memory rate-limit store gives every replica its own budget: set redis.url (or redis.existingSecret), or allowPerReplicaRateLimits=true" -}}
{{- end -}}
{{- end -}}

{{/* The image: the Dockerfile's default (Node) target, or its `bun` target pushed as <tag><bunTagSuffix>. */}}
{{- define "scopegate.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if eq .Values.runtime "bun" -}}{{- $tag = printf "%s%s" $tag .Values.image.bunTagSuffix -}}{{- end -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}

{{/* In-cluster URL of the gateway Service's proxy port (what a front proxy calls in forward-auth mode). */}}
{{- define "scopegate.serviceUrl" -}}
{{- printf "http://%s.%s.svc.%s:%d" (include "scopegate.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.service.port) -}}
{{- end -}}

{{/*
The identity headers scopegate sets (SPEC §5; prefix from config tokens.identity_header_prefix,
default X-Auth-), as a JSON list.
*/}}
{{- define "scopegate.identityHeaders" -}}
{{- $prefix := "X-Auth-" -}}
{{- $tokens := (get .Values.config "tokens") | default dict -}}
{{- if hasKey $tokens "identity_header_prefix" -}}{{- $prefix = get $tokens "identity_header_prefix" -}}{{- end -}}
{{- $out := list -}}
{{- range list "Subject" "Client-Type" "Scopes" "Room" "Room-Name" "Group" "Token-Id" "Issuer" -}}
{{- $out = append $out (printf "%s%s" $prefix .) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
Headers of an allowed forward-auth answer that the front proxy copies into the upstream request:
the identity headers, then the rate-limit headers, as a JSON list. Listing every identity header
also overwrites a client's own header of that name (nginx also removes it when scopegate sent none).
*/}}
{{- define "scopegate.forwardAuthHeaders" -}}
{{- toJson (concat (include "scopegate.identityHeaders" . | fromJsonArray) (include "scopegate.rateLimitHeaders" . | fromJsonArray)) -}}
{{- end -}}

{{/* The rate-limit headers of SPEC §4, as a JSON list. */}}
{{- define "scopegate.rateLimitHeaders" -}}
{{- toJson (list "X-Ratelimit-Limit" "X-Ratelimit-Remaining" "X-Ratelimit-Reset" "RateLimit-Policy" "RateLimit" "X-FloodControl-Limit" "X-FloodControl-Remaining" "X-FloodControl-Reset") -}}
{{- end -}}
