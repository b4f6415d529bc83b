{{/* Names: RELEASE-bouncer unless the release is already called bouncer... */}}
{{- define "bouncer.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "bouncer.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: include "bouncer.selector" (list . "worker") */}}
{{- define "bouncer.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ $.Chart.Name }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* The image, pinned: a tag (never latest) or a digest. */}}
{{- define "bouncer.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString -}}
{{- if eq $tag "latest" -}}
{{- fail "image.tag: \"latest\" is not pinned; set the version you built (e.g. a release or a commit hash)" -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "bouncer.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "bouncer.fullname" .)) -}}
{{- end -}}

{{/* One variable from the Secret. */}}
{{- define "bouncer.secretEnv" -}}
{{- $ := index . 0 -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "bouncer.secretName" $ }}
      key: {{ index . 1 }}
      {{- if index . 2 }}
      optional: true
      {{- end }}
{{- end -}}

{{/* CLICKHOUSE_* for every command. */}}
{{- define "bouncer.clickhouseEnv" -}}
- name: CLICKHOUSE_ADDR
  value: {{ required "clickhouse.addr: set ClickHouse's native-protocol address(es), host:port[,host:port...] (e.g. clickhouse:9000)" .Values.clickhouse.addr | quote }}
- name: CLICKHOUSE_DATABASE
  value: {{ .Values.clickhouse.database | quote }}
- name: CLICKHOUSE_USER
  value: {{ .Values.clickhouse.user | quote }}
- name: CLICKHOUSE_TLS
  value: {{ .Values.clickhouse.tls | quote }}
{{- with .Values.clickhouse.cluster }}
- name: CLICKHOUSE_CLUSTER
  value: {{ . | quote }}
{{- end }}
{{- if or .Values.secrets.existingSecret .Values.secrets.clickhousePassword }}
{{ include "bouncer.secretEnv" (list . "CLICKHOUSE_PASSWORD" (not (empty .Values.secrets.existingSecret))) }}
{{- end }}
{{- end -}}

{{/* KAFKA_* and the topic, for worker and api. */}}
{{- define "bouncer.kafkaEnv" -}}
- name: KAFKA_BROKERS
  value: {{ required "kafka.brokers: set Kafka's bootstrap brokers, host:port[,host:port...] (e.g. kafka:9092)" .Values.kafka.brokers | quote }}
- name: KAFKA_TLS
  value: {{ .Values.kafka.tls | quote }}
{{- with .Values.kafka.saslMechanism }}
- name: KAFKA_SASL_MECHANISM
  value: {{ . | quote }}
- name: KAFKA_SASL_USERNAME
  value: {{ required "kafka.saslUsername: a SASL mechanism is set, so is a user name" $.Values.kafka.saslUsername | quote }}
{{ include "bouncer.secretEnv" (list $ "KAFKA_SASL_PASSWORD" false) }}
{{- end }}
- name: BOUNCER_TOPIC
  value: {{ .Values.kafka.topic | quote }}
- name: BOUNCER_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "bouncer.secretName" . }}
      key: BOUNCER_SECRET_KEY
- name: BOUNCER_LOG_FORMAT
  value: json
- name: BOUNCER_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end -}}

{{/* Extra NAME: value variables, sorted. */}}
{{- define "bouncer.extraEnv" -}}
{{- range $k, $v := . }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{- define "bouncer.podSpecCommon" -}}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{- define "bouncer.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* startup, liveness and readiness probes on the ops port. */}}
{{- define "bouncer.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: ops
  periodSeconds: 10
  failureThreshold: {{ .startupFailureThreshold }}
livenessProbe:
  httpGet:
    path: /healthz
    port: ops
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: ops
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 2
{{- end -}}
