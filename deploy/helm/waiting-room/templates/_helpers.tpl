{{/* Names, labels and the settings shared by every template. */}}

{{- define "waiting-room.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "waiting-room.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "waiting-room.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "waiting-room.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "waiting-room.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "waiting-room.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "activator") */}}
{{- define "waiting-room.selectorLabels" -}}
app.kubernetes.io/name: {{ include "waiting-room.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "waiting-room.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The three services: name, values, port. */}}
{{- define "waiting-room.components" -}}
waiting-room: {values: waitingRoom, port: 8080, listenEnv: WAITING_ROOM_LISTEN}
activator: {values: activator, port: 8082, listenEnv: ACTIVATOR_LISTEN}
reservation: {values: reservation, port: 8081, listenEnv: RESERVATION_LISTEN}
{{- end }}

{{- define "waiting-room.envSecretName" -}}
{{- default (printf "%s-env" (include "waiting-room.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{- define "waiting-room.signingKeySecretName" -}}
{{- default (printf "%s-signing-key" (include "waiting-room.fullname" .)) .Values.signingKey.existingSecret }}
{{- end }}

{{- define "waiting-room.publicUrl" -}}
{{- $host := .host }}
{{- $tls := false }}
{{- range .root.Values.ingress.tls }}{{ if has $host .hosts }}{{ $tls = true }}{{ end }}{{ end }}
{{- printf "%s://%s" (ternary "https" "http" $tls) $host }}
{{- end }}

{{/*
Non-secret settings of every service (and of the set-up Job), as name: value lines.
Refuses to render without the brokers' address.
*/}}
{{- define "waiting-room.settings" -}}
{{- $v := .Values -}}
KAFKA_BROKERS: {{ required "kafka.brokers is required (the Kafka bootstrap servers)" $v.kafka.brokers | quote }}
{{- with $v.kafka.securityProtocol }}
KAFKA_SECURITY_PROTOCOL: {{ . | quote }}
{{- end }}
{{- with $v.kafka.saslMechanism }}
KAFKA_SASL_MECHANISM: {{ . | quote }}
{{- end }}
{{- if $v.kafka.caKey }}
KAFKA_SSL_CA_LOCATION: {{ printf "/etc/waiting-room/ca/%s" $v.kafka.caKey | quote }}
{{- end }}
{{- if $v.kafka.clientCertSecret }}
KAFKA_SSL_CERTIFICATE_LOCATION: "/etc/waiting-room/kafka-client/tls.crt"
KAFKA_SSL_KEY_LOCATION: "/etc/waiting-room/kafka-client/tls.key"
{{- end }}
KAFKA_REPLICATION_FACTOR: {{ $v.kafka.replicationFactor | quote }}
KAFKA_MIN_INSYNC_REPLICAS: {{ $v.kafka.minInsyncReplicas | quote }}
TICKETS_TOPIC: {{ $v.kafka.topics.tickets | quote }}
TICKETS_PARTITIONS: {{ $v.kafka.topics.ticketsPartitions | quote }}
TICKETS_DLQ_TOPIC: {{ $v.kafka.topics.ticketsDlq | quote }}
DECISIONS_TOPIC: {{ $v.kafka.topics.decisions | quote }}
RESERVATIONS_TOPIC: {{ $v.kafka.topics.reservations | quote }}
REDIS_KEY_PREFIX: {{ $v.redis.keyPrefix | quote }}
{{- if $v.redis.caKey }}
REDIS_CA_FILE: {{ printf "/etc/waiting-room/ca/%s" $v.redis.caKey | quote }}
{{- end }}
DATABASE_MAX_CONNECTIONS: {{ $v.postgres.maxConnections | quote }}
LOG_FORMAT: {{ $v.config.logFormat | quote }}
RUST_LOG: {{ $v.config.rustLog | quote }}
OPERATIONS_LISTEN: {{ printf "0.0.0.0:%v" $v.operationsPort | quote }}
{{- range $name, $value := $v.config.env }}
{{ $name }}: {{ $value | quote }}
{{- end }}
{{- end }}

{{/* Secret environment every service reads; the Kafka credentials only when set. */}}
{{- define "waiting-room.secretEnv" -}}
{{- $secret := include "waiting-room.envSecretName" . -}}
- name: DATABASE_URL
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: DATABASE_URL}}
- name: REDIS_URL
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: REDIS_URL}}
- name: KAFKA_SASL_USERNAME
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: KAFKA_SASL_USERNAME, optional: true}}
- name: KAFKA_SASL_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: KAFKA_SASL_PASSWORD, optional: true}}
{{- end }}

{{/* The dependencies' CA certificates and the Kafka client certificate, when given. */}}
{{- define "waiting-room.caVolume" -}}
{{- if .Values.tls.caSecret }}
- name: ca
  secret:
    secretName: {{ .Values.tls.caSecret }}
{{- end }}
{{- if .Values.kafka.clientCertSecret }}
- name: kafka-client
  secret:
    secretName: {{ .Values.kafka.clientCertSecret }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{- define "waiting-room.caMount" -}}
{{- if .Values.tls.caSecret }}
- name: ca
  mountPath: /etc/waiting-room/ca
  readOnly: true
{{- end }}
{{- if .Values.kafka.clientCertSecret }}
- name: kafka-client
  mountPath: /etc/waiting-room/kafka-client
  readOnly: true
{{- end }}
{{- end }}

{{/* A service's volumes and mounts: (dict "root" $ "name" "waiting-room" "values" ...) */}}
{{- define "waiting-room.volumes" -}}
{{- if eq .name "waiting-room" }}
- name: signing-key
  secret:
    secretName: {{ include "waiting-room.signingKeySecretName" .root }}
    defaultMode: 0440
{{- end }}
{{- include "waiting-room.caVolume" .root }}
{{- with .values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "waiting-room.volumeMounts" -}}
{{- if eq .name "waiting-room" }}
- name: signing-key
  mountPath: /etc/waiting-room/signing-key
  readOnly: true
{{- end }}
{{- include "waiting-room.caMount" .root }}
{{- with .values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}
