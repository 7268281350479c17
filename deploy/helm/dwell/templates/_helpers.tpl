{{- define "dwell.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dwell.fullname" -}}
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

{{- define "dwell.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "dwell.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "dwell.selector" -}}
app.kubernetes.io/name: {{ include "dwell.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dwell.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "dwell.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}
{{ default (include "dwell.fullname" .) .Values.serviceAccount.name }}
{{- else -}}
{{ default "default" .Values.serviceAccount.name }}
{{- end -}}
{{- end -}}

{{- define "dwell.adminSecret" -}}
{{ .Values.admin.existingSecret | default (printf "%s-admin" (include "dwell.fullname" .)) }}
{{- end -}}

{{/* The Kafka flags and environment shared by dwell run, deliver and collect. */}}
{{- define "dwell.kafkaArgs" -}}
- --brokers={{ .Values.kafka.brokers }}
{{- with .Values.kafka.tls }}
{{- if .enabled }}
- --tls
{{- if and .existingSecret .caKey }}
- --tls-ca=/etc/dwell/tls/{{ .caKey }}
{{- end }}
{{- if and .existingSecret .certKey }}
- --tls-cert=/etc/dwell/tls/{{ .certKey }}
- --tls-key=/etc/dwell/tls/{{ .keyKey }}
{{- end }}
{{- if .insecureSkipVerify }}
- --tls-insecure-skip-verify
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.kafka.sasl.mechanism }}
- --sasl-mechanism={{ .Values.kafka.sasl.mechanism }}
{{- end }}
{{- end -}}

{{- define "dwell.kafkaEnv" -}}
{{- if .Values.kafka.sasl.mechanism }}
{{- if not .Values.kafka.sasl.existingSecret }}
{{- fail "kafka.sasl.mechanism needs kafka.sasl.existingSecret (a Secret with the user and password)" }}
{{- end }}
- name: DWELL_SASL_USER
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.userKey }}
- name: DWELL_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- end -}}

{{- define "dwell.tlsVolume" -}}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
{{- end }}
{{- end -}}

{{- define "dwell.tlsMount" -}}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/dwell/tls
  readOnly: true
{{- end }}
{{- end -}}
