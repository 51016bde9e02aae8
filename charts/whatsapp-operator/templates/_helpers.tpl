{{/* Names, labels and small shared pieces of the whatsapp-operator chart. */}}

{{- define "wa.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wa.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "wa.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "wa.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Common labels; `component` is operator, hub or session-policy. */}}
{{- define "wa.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "wa.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/component: {{ .component }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "wa.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wa.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "wa.operator.fullname" -}}{{ include "wa.fullname" . | trunc 54 | trimSuffix "-" }}-operator{{- end -}}
{{- define "wa.hub.fullname" -}}{{ include "wa.fullname" . | trunc 58 | trimSuffix "-" }}-hub{{- end -}}

{{- define "wa.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "wa.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create=false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "wa.hub.serviceAccountName" -}}
{{- if .Values.hub.serviceAccount.create -}}
{{- default (include "wa.hub.fullname" .) .Values.hub.serviceAccount.name -}}
{{- else -}}
{{- required "hub.serviceAccount.name is required when hub.serviceAccount.create=false" .Values.hub.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "wa.image" -}}
{{- printf "%s:%s" .repository (default .root.Chart.AppVersion .tag) -}}
{{- end -}}

{{/* Name of the Secret holding users.yaml and jwt-secret. */}}
{{- define "wa.hub.authSecretName" -}}
{{- default (printf "%s-auth" (include "wa.hub.fullname" .)) .Values.hub.auth.existingSecret -}}
{{- end -}}

{{/* Namespaces that get the session NetworkPolicy: the release's plus sessionNamespaces.names
     plus the watched namespace, each once. */}}
{{- define "wa.sessionNamespaces" -}}
{{- $all := list .Release.Namespace -}}
{{- with .Values.operator.watchNamespace }}{{ $all = append $all . }}{{ end -}}
{{- range .Values.sessionNamespaces.names }}{{ $all = append $all . }}{{ end -}}
{{- $all | uniq | toJson -}}
{{- end -}}
