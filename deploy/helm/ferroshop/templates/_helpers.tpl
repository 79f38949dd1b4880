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

{{/* Base URL of an enabled Rust service inside the cluster, empty if it is disabled.
     (list $ "user-service") */}}
{{- define "ferroshop.serviceUrl" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $svc := index $root.Values.services $name -}}
{{- if and $svc $svc.enabled -}}
{{- printf "http://%s:%v" (include "ferroshop.component" (list $root $name)) $svc.port -}}
{{- end -}}
{{- end -}}

{{/* The payment provider: the bundled simulator if enabled, else the external one. */}}
{{- define "ferroshop.paymentProviderUrl" -}}
{{- $sim := include "ferroshop.serviceUrl" (list . "psp-sim") -}}
{{- if $sim -}}
{{- $sim -}}
{{- else -}}
{{- required "external.paymentProvider.url is required when services.psp-sim is disabled" .Values.external.paymentProvider.url -}}
{{- end -}}
{{- end -}}

{{/* The SMS gateway: the bundled simulator if enabled, else the external one. */}}
{{- define "ferroshop.smsGatewayUrl" -}}
{{- $sim := include "ferroshop.serviceUrl" (list . "sms-sim") -}}
{{- if $sim -}}
{{- $sim -}}
{{- else -}}
{{- required "external.smsGateway.url is required when services.sms-sim is disabled" .Values.external.smsGateway.url -}}
{{- end -}}
{{- end -}}

{{/* A service's non-secret environment (its ConfigMap's data): the common variables, the
     shared settings it `uses`, its upstreams' addresses, commonEnv, then its own env.
     (list $ name svc) */}}
{{- define "ferroshop.configData" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $svc := index . 2 -}}
{{- $uses := $svc.uses | default (list) -}}
APP_PROFILE: {{ $root.Values.profile | quote }}
HOST: "0.0.0.0"
PORT: {{ $svc.port | quote }}
RUST_LOG: {{ $root.Values.logLevel | quote }}
{{- if has "zipkin" $uses }}
ZIPKIN_ENDPOINT: {{ include "ferroshop.zipkinEndpoint" $root | quote }}
{{- end }}
{{- if has "kafka" $uses }}
KAFKA_BROKERS: {{ include "ferroshop.kafkaBrokers" $root | quote }}
{{- end }}
{{- if has "jwks" $uses }}
{{- with include "ferroshop.serviceUrl" (list $root "user-service") }}
JWKS_URL: {{ printf "%s/.well-known/jwks.json" . | quote }}
{{- end }}
{{- end }}
{{- if has "smtp" $uses }}
SMTP_HOST: {{ include "ferroshop.smtpHost" $root | quote }}
SMTP_PORT: {{ ternary "1025" ($root.Values.infra.smtp.port | toString) $root.Values.infra.bundled | quote }}
{{- end }}
{{- if has "paymentProvider" $uses }}
PSP_SIM_URL: {{ include "ferroshop.paymentProviderUrl" $root | quote }}
{{- end }}
{{- if has "smsGateway" $uses }}
SMS_API_URL: {{ include "ferroshop.smsGatewayUrl" $root | quote }}
{{- end }}
{{- if and (has "workflow" $uses) $root.Values.workflowEngine.enabled }}
WORKFLOW_ENGINE_URL: {{ printf "http://%s:%v" (include "ferroshop.component" (list $root "workflow-engine")) $root.Values.workflowEngine.port | quote }}
{{- end }}
{{- range $upstream := $svc.upstreams }}
{{- with include "ferroshop.serviceUrl" (list $root $upstream) }}
{{ printf "%s_URL" ($upstream | upper | replace "-" "_") }}: {{ . | quote }}
{{- end }}
{{- end }}
{{- if eq $name "user-service" }}
JWT_PRIVATE_KEY_PATH: /var/lib/ferroshop/secrets/{{ $svc.jwtKeySecretKey | default "jwt-ed25519.pem" }}
{{- end }}
{{- range $k, $v := $root.Values.commonEnv }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- range $k, $v := $svc.env }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/* Development only: the secret variables of a service with the local-profile values from
     the design brief, pointing at the bundled infrastructure; empty for a service that has
     none (the gateway). (list $ name) */}}
{{- define "ferroshop.devSecretData" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $pg := include "ferroshop.component" (list $root "postgres") -}}
{{- $mongo := printf "mongodb://%s:27017" (include "ferroshop.component" (list $root "mongo")) -}}
{{- if eq $name "user-service" }}
DATABASE_URL: {{ printf "postgres://shop:shop@%s:5432/users" $pg | quote }}
ADMIN_EMAIL: admin@example.com
ADMIN_PASSWORD: admin-dev-password
{{- else if eq $name "product-service" }}
MONGODB_URL: {{ $mongo | quote }}
{{- else if eq $name "order-service" }}
DATABASE_URL: {{ printf "postgres://shop:shop@%s:5432/orders" $pg | quote }}
{{- else if eq $name "payment-service" }}
MONGODB_URL: {{ $mongo | quote }}
PSP_API_KEY: sk_test_ferroshop
{{- else if eq $name "notification-service" }}
DATABASE_URL: {{ printf "postgres://shop:shop@%s:5432/notifications" $pg | quote }}
SMS_API_TOKEN: sms-sim-local-token
{{- else if eq $name "psp-sim" }}
PSP_API_KEY: sk_test_ferroshop
{{- else if eq $name "sms-sim" }}
SMS_SIM_TOKEN: sms-sim-local-token
{{- end }}
{{- end -}}

{{/* The Secret holding a service's secret variables: existingSecret, or the dev one (when
     the service has dev secrets at all). */}}
{{- define "ferroshop.serviceSecret" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $svc := index . 2 -}}
{{- if $svc.existingSecret -}}
{{- $svc.existingSecret -}}
{{- else if and $root.Values.devSecrets.create (include "ferroshop.devSecretData" (list $root $name) | trim) -}}
{{- printf "%s-dev" (include "ferroshop.component" (list $root $name)) -}}
{{- end -}}
{{- end -}}
