{{/* Release-scoped name prefix (truncated to the DNS label limit). */}}
{{- define "ferroshop.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of one component: <fullname>-<component>. Call with (list $ "user-service"). */}}
{{- define "ferroshop.component" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "ferroshop.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ferroshop.labels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ index . 1 }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/part-of: ferroshop
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version }}
{{- end -}}

{{- define "ferroshop.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ index . 1 }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
{{- end -}}

{{/* Image of a Rust service: <registry>/<repository>/<service>:<tag>. (list $ name svc) */}}
{{- define "ferroshop.image" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $svc := index . 2 -}}
{{- $img := $root.Values.image -}}
{{- $repo := default (printf "%s/%s" $img.repository $name) $svc.image -}}
{{- if $img.registry -}}{{- $repo = printf "%s/%s" $img.registry $repo -}}{{- end -}}
{{- printf "%s:%s" $repo (default $root.Chart.AppVersion $img.tag) -}}
{{- end -}}

{{/* Address of an infrastructure component: the bundled one, or the external value. */}}
{{- define "ferroshop.kafkaBrokers" -}}
{{- if .Values.infra.bundled -}}
{{- printf "%s:9092" (include "ferroshop.component" (list . "kafka")) -}}
{{- else -}}
{{- required "infra.kafka.brokers is required when infra.bundled is false" .Values.infra.kafka.brokers -}}
{{- end -}}
{{- end -}}

{{- define "ferroshop.zipkinEndpoint" -}}
{{- if .Values.infra.bundled -}}
{{- printf "http://%s:9411/api/v2/spans" (include "ferroshop.component" (list . "zipkin")) -}}
{{- else -}}
{{- default "off" .Values.infra.zipkin.endpoint -}}
{{- end -}}
{{- end -}}

{{- define "ferroshop.smtpHost" -}}
{{- if .Values.infra.bundled -}}
{{- include "ferroshop.component" (list . "mailpit") -}}
{{- else -}}
{{- .Values.infra.smtp.host -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding a service's secret variables: existingSecret, or the dev one. */}}
{{- define "ferroshop.serviceSecret" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $svc := index . 2 -}}
{{- if $svc.existingSecret -}}
{{- $svc.existingSecret -}}
{{- else if $root.Values.devSecrets.create -}}
{{- printf "%s-dev" (include "ferroshop.component" (list $root $name)) -}}
{{- end -}}
{{- end -}}
