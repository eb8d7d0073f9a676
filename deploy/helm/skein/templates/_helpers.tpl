{{/* The name of every object of the control plane. */}}
{{- define "skein.fullname" -}}
skein-control-plane
{{- end -}}

{{/* Labels on every object. */}}
{{- define "skein.labels" -}}
app.kubernetes.io/name: {{ include "skein.fullname" . }}
app.kubernetes.io/part-of: skein
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* The pods' selector: stable across upgrades. */}}
{{- define "skein.selector" -}}
app.kubernetes.io/name: {{ include "skein.fullname" . }}
{{- end -}}

{{- define "skein.joinSecret" -}}
{{ .Values.joinToken.existingSecret | default "skein-join-token" }}
{{- end -}}

{{/* Replicas: replicaCount, or 2 with kubernetes (HA) and 1 without. */}}
{{- define "skein.replicas" -}}
{{ .Values.replicaCount | default (ternary 2 1 .Values.kubernetes) | int }}
{{- end -}}
