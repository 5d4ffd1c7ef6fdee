{{- define "jobplatform.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "jobplatform.fullname" -}}
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

{{- define "jobplatform.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "jobplatform.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: include "jobplatform.selector" (list . "web") */}}
{{- define "jobplatform.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "jobplatform.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "jobplatform.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "jobplatform.secretName" -}}
{{- .Values.existingSecret | default (printf "%s-env" (include "jobplatform.fullname" .)) -}}
{{- end -}}

{{- define "jobplatform.minioName" -}}
{{- printf "%s-minio" (include "jobplatform.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Restart pods when their configuration changes. */}}
{{- define "jobplatform.configChecksums" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end -}}

{{/* Pod-level settings every workload shares. */}}
{{- define "jobplatform.podCommon" -}}
automountServiceAccountToken: false
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The app container's image, settings and writable /tmp; include with (list . "web"|"worker"). */}}
{{- define "jobplatform.appContainer" -}}
{{- $root := index . 0 -}}
image: {{ include "jobplatform.image" $root }}
imagePullPolicy: {{ $root.Values.image.pullPolicy }}
securityContext:
  {{- toYaml $root.Values.securityContext | nindent 2 }}
envFrom:
  - configMapRef:
      name: {{ include "jobplatform.fullname" $root }}
  - secretRef:
      name: {{ include "jobplatform.secretName" $root }}
env:
  - name: DJANGO_SETTINGS_MODULE
    value: jobplatform.settings.{{ index . 1 }}
  - name: POD_IP
    valueFrom:
      fieldRef:
        fieldPath: status.podIP
  # Probes and Prometheus address the pod by its IP, which Django must accept as a host.
  - name: DJANGO_ALLOWED_HOSTS
    value: {{ printf "%s,$(POD_IP)" $root.Values.config.allowedHosts | quote }}
{{- end -}}

{{- define "jobplatform.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end -}}

{{- define "jobplatform.scheduling" -}}
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
{{- end -}}
