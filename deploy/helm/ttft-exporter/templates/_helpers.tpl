{{/*
Named templates. The sidecar ones are called by host charts with a small context,
  (dict "Values" .Values.ttftExporter "Release" .Release)
so every helper here reads only .Values and .Release (never .Chart, which would be the
host chart's).
*/}}

{{- define "ttft-exporter.name" -}}
{{- default "ttft-exporter" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ttft-exporter.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "ttft-exporter.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ttft-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ttft-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ttft-exporter.labels" -}}
{{ include "ttft-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ include "ttft-exporter.version" . | quote }}
app.kubernetes.io/component: exporter
app.kubernetes.io/part-of: ttft-exporter
app.kubernetes.io/managed-by: {{ .Release.Service | default "Helm" }}
{{- end -}}

{{/* The exporter version: the image tag, else the chart's appVersion (kept in sync). */}}
{{- define "ttft-exporter.version" -}}
{{- .Values.image.tag | default "0.1.0" -}}
{{- end -}}

{{- define "ttft-exporter.image" -}}
{{- $repo := printf "%s/%s" .Values.image.registry .Values.image.repository | trimPrefix "/" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (include "ttft-exporter.version" .) -}}
{{- end -}}
{{- end -}}

{{- define "ttft-exporter.configMapName" -}}
{{- .Values.existingConfigMap | default (printf "%s-config" (include "ttft-exporter.fullname" .)) -}}
{{- end -}}

{{- define "ttft-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "ttft-exporter.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* The job label every rule selects (slos.job, default ttft-exporter). */}}
{{- define "ttft-exporter.job" -}}
{{- $slos := .Values.config.slos | default dict -}}
{{- $slos.job | default "ttft-exporter" -}}
{{- end -}}

{{/* sha256 of the config: a pod annotation that rolls pods when it changes. */}}
{{- define "ttft-exporter.configChecksum" -}}
{{- toYaml .Values.config | sha256sum -}}
{{- end -}}

{{/* Pod annotations for a pod running the exporter (host charts include it too). */}}
{{- define "ttft-exporter.podAnnotations" -}}
checksum/ttft-exporter-config: {{ include "ttft-exporter.configChecksum" . }}
{{- end -}}

{{/* The exporter container, without the list dash. */}}
{{- define "ttft-exporter.containerSpec" -}}
name: ttft-exporter
image: {{ include "ttft-exporter.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
args:
  - --config.file=/etc/ttft-exporter/config.yml
  - --web.listen-address=:{{ .Values.port }}
  {{- if .Values.webConfig.existingSecret }}
  - --web.config.file=/etc/ttft-exporter/web/web-config.yml
  {{- end }}
  {{- if and (eq .Values.mode "deployment") (gt (int .Values.shards) 1) }}
  - --shard.index=$(TTFT_SHARD_INDEX)
  - --shard.count={{ .Values.shards }}
  {{- end }}
  {{- range .Values.extraArgs }}
  - {{ . | quote }}
  {{- end }}
env:
  # The pod's identity for the OTel resource (k8s.pod.name, …; docs/CONFIGURATION.md, otel).
  - name: K8S_POD_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  - name: K8S_POD_UID
    valueFrom:
      fieldRef:
        fieldPath: metadata.uid
  - name: K8S_NAMESPACE_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.namespace
  - name: K8S_NODE_NAME
    valueFrom:
      fieldRef:
        fieldPath: spec.nodeName
  {{- if and (eq .Values.mode "deployment") (gt (int .Values.shards) 1) }}
  - name: TTFT_SHARD_INDEX
    valueFrom:
      fieldRef:
        fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
  {{- end }}
  {{- range $name, $ref := .Values.secretEnv }}
  - name: {{ $name }}
    valueFrom:
      secretKeyRef:
        name: {{ required "secretEnv.*.secretName is required" $ref.secretName }}
        key: {{ required "secretEnv.*.key is required" $ref.key }}
  {{- end }}
  {{- with .Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
ports:
  - name: ttft-metrics
    containerPort: {{ .Values.port }}
    protocol: TCP
{{- if .Values.webConfig.existingSecret }}
livenessProbe:
  tcpSocket:
    port: ttft-metrics
  periodSeconds: {{ .Values.livenessProbe.periodSeconds | default 10 }}
readinessProbe:
  tcpSocket:
    port: ttft-metrics
  periodSeconds: {{ .Values.readinessProbe.periodSeconds | default 5 }}
{{- else }}
{{- with .Values.livenessProbe }}
livenessProbe:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.readinessProbe }}
readinessProbe:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- with .Values.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumeMounts:
  - name: ttft-exporter-config
    mountPath: /etc/ttft-exporter/config.yml
    subPath: config.yml
    readOnly: true
  {{- if .Values.webConfig.existingSecret }}
  - name: ttft-exporter-web-config
    mountPath: /etc/ttft-exporter/web
    readOnly: true
  {{- end }}
  {{- range .Values.secretMounts }}
  - name: {{ printf "ttft-secret-%s" .name | trunc 63 | trimSuffix "-" }}
    mountPath: {{ required "secretMounts.*.mountPath is required" .mountPath }}
    readOnly: true
  {{- end }}
  {{- with .Values.extraVolumeMounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* The pod volumes the exporter container needs (host charts include it too). */}}
{{- define "ttft-exporter.sidecarVolumes" -}}
- name: ttft-exporter-config
  configMap:
    name: {{ include "ttft-exporter.configMapName" . }}
{{- if .Values.webConfig.existingSecret }}
- name: ttft-exporter-web-config
  secret:
    secretName: {{ .Values.webConfig.existingSecret }}
{{- end }}
{{- range .Values.secretMounts }}
- name: {{ printf "ttft-secret-%s" (required "secretMounts.*.name is required" .name) | trunc 63 | trimSuffix "-" }}
  secret:
    secretName: {{ required "secretMounts.*.secretName is required" .secretName }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* For a host pod's `containers:` list: the exporter, unless it runs as a native sidecar. */}}
{{- define "ttft-exporter.sidecarContainers" -}}
{{- if not .Values.sidecar.native -}}
- {{ include "ttft-exporter.containerSpec" . | nindent 2 | trim }}
{{- end -}}
{{- end -}}

{{/* For a host pod's `initContainers:` list: the exporter as a native sidecar
(restartPolicy: Always, Kubernetes >= 1.29), when sidecar.native is set. */}}
{{- define "ttft-exporter.sidecarInitContainers" -}}
{{- if .Values.sidecar.native -}}
- {{ include "ttft-exporter.containerSpec" . | nindent 2 | trim }}
  restartPolicy: Always
{{- end -}}
{{- end -}}

{{/* The pod spec body shared by the Deployment and the StatefulSet. */}}
{{- define "ttft-exporter.podSpec" -}}
serviceAccountName: {{ include "ttft-exporter.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.automountServiceAccountToken }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
containers:
  - {{ include "ttft-exporter.containerSpec" . | nindent 4 | trim }}
volumes:
  {{- include "ttft-exporter.sidecarVolumes" . | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Relabelings that set `job` to the value the rules select, whatever the monitor. */}}
{{- define "ttft-exporter.jobRelabeling" -}}
- action: replace
  targetLabel: job
  replacement: {{ include "ttft-exporter.job" . | quote }}
{{- end -}}
