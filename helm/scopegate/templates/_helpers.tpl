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
copy (listen.port, admin.port, upstreams.default.url, and rate_limit.store/redis_url when Redis is
configured). test/deploy/chart.test.ts mirrors these steps to validate the default config against
the real schema; change both together.
*/}}
{{- define "scopegate.gatewayConfig" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $listen := (get $cfg "listen") | default dict -}}
{{- $_ := set $listen "port" (int .Values.ports.proxy) -}}
{{- $_ := set $cfg "listen" $listen -}}
{{- $admin := (get $cfg "admin") | default dict -}}
{{- $_ := set $admin "port" (int .Values.ports.admin) -}}
{{- $_ := set $cfg "admin" $admin -}}
{{- $upstreams := (get $cfg "upstreams") | default dict -}}
{{- $default := (get $upstreams "default") | default dict -}}
{{- $_ := set $default "url" (include "scopegate.upstreamUrl" .) -}}
{{- $_ := set $upstreams "default" $default -}}
{{- $_ := set $cfg "upstreams" $upstreams -}}
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
{{- if not (has .Values.mode (list "ingress" "sidecar")) -}}
{{- fail (printf "mode must be ingress or sidecar, got %q" .Values.mode) -}}
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
