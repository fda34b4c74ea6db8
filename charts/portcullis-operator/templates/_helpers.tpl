{{- define "portcullis-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "portcullis-operator.selectorLabels" -}}
app.kubernetes.io/name: portcullis-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "portcullis-operator.labels" -}}
{{ include "portcullis-operator.selectorLabels" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: portcullis
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "portcullis-operator.serviceAccountName" -}}
{{- default (include "portcullis-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}
