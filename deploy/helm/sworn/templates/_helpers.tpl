{{/* Names and labels. */}}
{{- define "sworn.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The StatefulSet's name, and so the prefix of every pod name ("<fullname>-<ordinal>"),
which is the key of each pod's log key and part of its origin. Kept short: a pod name
also labels its PVC and its DNS name in the headless Service.
*/}}
{{- define "sworn.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sworn.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sworn.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sworn.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sworn.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sworn
{{- end -}}

{{- define "sworn.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "sworn.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "sworn.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "sworn.headlessName" -}}
{{ include "sworn.fullname" . }}-pods
{{- end -}}

{{/* Secret names: the one the chart creates, or the existing one named in values. */}}
{{- define "sworn.apiKeysSecret" -}}
{{- if .Values.apiKeys.content -}}{{ include "sworn.fullname" . }}-api-keys{{- else -}}{{ .Values.apiKeys.existingSecret }}{{- end -}}
{{- end -}}
{{- define "sworn.logKeysSecret" -}}
{{- if .Values.logKeys.create -}}{{ include "sworn.fullname" . }}-log-keys{{- else -}}{{ .Values.logKeys.existingSecret }}{{- end -}}
{{- end -}}
{{- define "sworn.chainKeysSecret" -}}
{{- if .Values.anchor.chainKeys.create -}}{{ include "sworn.fullname" . }}-chain-keys{{- else -}}{{ .Values.anchor.chainKeys.existingSecret }}{{- end -}}
{{- end -}}

{{/* Whether sworn terminates TLS itself. */}}
{{- define "sworn.scheme" -}}
{{- if .Values.tls.existingSecret -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}

{{/*
Checks of values that would otherwise make a pod that cannot start, each failing the
render with the setting to fix.
*/}}
{{- define "sworn.validate" -}}
{{- if .Values.anchor.enabled -}}
{{- $_ := required "anchor.rpcUrl is required: the chain's JSON-RPC URL every pod anchors through (or anchor.enabled=false)" .Values.anchor.rpcUrl -}}
{{- $_ := required "anchor.contract is required: the SwornAnchor address every pod anchors to (or anchor.enabled=false)" .Values.anchor.contract -}}
{{- if not (regexMatch "^0x[0-9a-fA-F]{40}$" .Values.anchor.contract) -}}
{{- fail (printf "anchor.contract must be a 0x-prefixed 20-byte hex address, got %q" .Values.anchor.contract) -}}
{{- end -}}
{{- if not (include "sworn.chainKeysSecret" .) -}}
{{- fail "anchor.chainKeys: give existingSecret or create" -}}
{{- end -}}
{{- if eq .Values.logKeys.source "generate" -}}
{{- fail "logKeys.source=generate cannot anchor: a log's key must be registered on the contract before it anchors; use logKeys.source=secret (docs/DEPLOY.md)" -}}
{{- end -}}
{{- end -}}
{{- if not (has .Values.logKeys.source (list "secret" "generate")) -}}
{{- fail (printf "logKeys.source must be secret or generate, got %q" .Values.logKeys.source) -}}
{{- end -}}
{{- if and (eq .Values.logKeys.source "secret") (not (include "sworn.logKeysSecret" .)) -}}
{{- fail "logKeys: give existingSecret or create (or source=generate)" -}}
{{- end -}}
{{- if and (not .Values.apiKeys.insecureNoAuth) (not (include "sworn.apiKeysSecret" .)) -}}
{{- fail "apiKeys: give existingSecret or content (or insecureNoAuth=true)" -}}
{{- end -}}
{{- if and .Values.model.fetch.enabled .Values.model.volume -}}
{{- fail "model: set either model.volume or model.fetch.enabled, not both" -}}
{{- end -}}
{{- if not (or .Values.model.fetch.enabled .Values.model.volume) -}}
{{- fail "model: the image holds no model; set model.volume (a volume with the model) or model.fetch.enabled" -}}
{{- end -}}
{{- if and .Values.model.fetch.enabled (not (hasPrefix "/models/" .Values.model.path)) -}}
{{- fail (printf "model.path must lie under /models/ (where the fetched model goes), got %q" .Values.model.path) -}}
{{- end -}}
{{- $owned := list "model" "model_id" "listen" "data_dir" "log_key" "origin" "api_keys" "insecure_no_auth" "tls_cert" "tls_key" "allow_plain_http" "rpc" "contract" "chain_key" "no_anchor" "config" -}}
{{- range $key, $_ := .Values.config -}}
{{- if has $key $owned -}}
{{- fail (printf "config.%s is set by the chart for each pod; use the chart's own value for it (values.yaml)" $key) -}}
{{- end -}}
{{- end -}}
{{- $replicas := ternary .Values.autoscaling.maxReplicas .Values.replicas .Values.autoscaling.enabled | int -}}
{{- if and (eq .Values.logKeys.source "secret") .Values.logKeys.create -}}
{{- range $i := until $replicas -}}
{{- $file := printf "%s-%d.key" (include "sworn.fullname" $) $i -}}
{{- if not (hasKey $.Values.logKeys.create $file) -}}
{{- fail (printf "logKeys.create has no %s: every pod up to %d (replicas, or autoscaling.maxReplicas) needs its own log key" $file $replicas) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.anchor.enabled .Values.anchor.chainKeys.create -}}
{{- range $i := until $replicas -}}
{{- $file := ternary (printf "%s-%d.key" (include "sworn.fullname" $) $i) "chain.key" $.Values.anchor.chainKeys.perPod -}}
{{- if not (hasKey $.Values.anchor.chainKeys.create $file) -}}
{{- fail (printf "anchor.chainKeys.create has no %s" $file) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
