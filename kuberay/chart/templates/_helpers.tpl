{{/* Names and labels */}}
{{- define "lwmecps.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "lwmecps.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: lwmecps-gym
{{- end -}}

{{- define "lwmecps.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* true when storage.root is a local path on the shared volume (not a cloud URI) */}}
{{- define "lwmecps.localStorage" -}}
{{- if not (contains "://" .Values.storage.root) -}}
{{- if not (hasPrefix (printf "%s/" .Values.storage.mountPath) .Values.storage.root) -}}
{{- fail (printf "storage.root: %q is neither a cloud URI nor under storage.mountPath %q" .Values.storage.root .Values.storage.mountPath) -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{- define "lwmecps.storageClaim" -}}
{{- .Values.storage.pvc.existingClaim | default (printf "%s-storage" (include "lwmecps.fullname" .)) -}}
{{- end -}}

{{- define "lwmecps.mongodbSecret" -}}
{{- .Values.mongodb.existingSecret | default (printf "%s-mongodb" (include "lwmecps.fullname" .)) -}}
{{- end -}}

{{- define "lwmecps.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key | default .name }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{/*
Environment of a Ray container. Argument: dict "root" $ "service" bool.
service: the container may run the service or its training jobs (MongoDB, JWT and Fernet keys); otherwise only
storage and W&B (a RayJob of a tune_configs preset).
*/}}
{{- define "lwmecps.env" -}}
{{- $ := .root -}}
{{- $secret := $.Values.secrets.name -}}
- name: LWMECPS_STORAGE_ROOT
  value: {{ $.Values.storage.root | quote }}
- name: LWMECPS_DATA_DIR
  value: /home/ray/.lwmecps
- name: LWMECPS_WANDB_MODE
  value: {{ $.Values.wandb.mode | quote }}
- name: WANDB_MODE
  value: {{ $.Values.wandb.mode | quote }}
{{ include "lwmecps.secretEnv" (dict "name" "WANDB_API_KEY" "secret" $secret "optional" true) }}
- name: RAY_USAGE_STATS_ENABLED
  value: {{ ternary "1" "0" $.Values.ray.usageStats | quote }}
{{- if .service }}
{{ include "lwmecps.secretEnv" (dict "name" "LWMECPS_JWT_SECRET" "secret" $secret) }}
{{ include "lwmecps.secretEnv" (dict "name" "LWMECPS_FERNET_KEY" "secret" $secret) }}
{{ include "lwmecps.secretEnv" (dict "name" "LWMECPS_ADMIN_PASSWORD" "secret" $secret) }}
{{- if $.Values.mongodb.bundled }}
{{ include "lwmecps.secretEnv" (dict "name" "MONGODB_ROOT_PASSWORD" "secret" (include "lwmecps.mongodbSecret" $) "key" "MONGO_INITDB_ROOT_PASSWORD") }}
- name: LWMECPS_MONGODB_URI
  value: {{ printf "mongodb://%s:$(MONGODB_ROOT_PASSWORD)@%s-mongodb:27017/?authSource=admin" $.Values.mongodb.rootUser (include "lwmecps.fullname" $) | quote }}
{{- else }}
{{ include "lwmecps.secretEnv" (dict "name" "LWMECPS_MONGODB_URI" "secret" $secret) }}
{{- end }}
{{- end }}
{{- with $.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Pod template of a Ray node. Argument: dict "root" $ "head" bool "service" bool "node" (.Values.head or .Values.workers).
*/}}
{{- define "lwmecps.rayPod" -}}
{{- $ := .root -}}
metadata:
  labels:
    {{- include "lwmecps.labels" $ | nindent 4 }}
spec:
  {{- if .service }}
  serviceAccountName: {{ $.Values.serviceAccount.name }}
  {{- end }}
  {{- with $.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $.Values.podSecurityContext | nindent 4 }}
  containers:
    - name: {{ ternary "ray-head" "ray-worker" .head }}
      image: {{ include "lwmecps.image" $ }}
      imagePullPolicy: {{ $.Values.image.pullPolicy }}
      resources:
        {{- toYaml .node.resources | nindent 8 }}
      env:
        {{- include "lwmecps.env" (dict "root" $ "service" .service) | nindent 8 }}
      {{- if .head }}
      ports:
        - {containerPort: 6379, name: gcs-server}
        - {containerPort: 8265, name: dashboard}
        - {containerPort: 10001, name: client}
        {{- if .service }}
        - {containerPort: 8000, name: serve}
        {{- end }}
      {{- end }}
      securityContext:
        allowPrivilegeEscalation: false
      lifecycle:
        preStop:
          exec:
            command: ["/bin/sh", "-c", "ray stop"]
      volumeMounts:
        - {name: dshm, mountPath: /dev/shm}
        {{- if include "lwmecps.localStorage" $ }}
        - {name: storage, mountPath: {{ $.Values.storage.mountPath }}}
        {{- end }}
  volumes:
    - name: dshm
      emptyDir:
        medium: Memory
        sizeLimit: {{ .node.shmSize }}
    {{- if include "lwmecps.localStorage" $ }}
    - name: storage
      persistentVolumeClaim:
        claimName: {{ include "lwmecps.storageClaim" $ }}
    {{- end }}
{{- end -}}

{{/*
A RayCluster spec: an autoscaling CPU worker group and a head that takes no training.
Argument: dict "root" $ "service" bool "workers" (dict with minReplicas, maxReplicas).
*/}}
{{- define "lwmecps.rayClusterSpec" -}}
{{- $ := .root -}}
{{- $w := .workers -}}
{{- if gt (int $w.minReplicas) (int $w.maxReplicas) -}}
{{- fail (printf "workers: minReplicas %v is greater than maxReplicas %v" $w.minReplicas $w.maxReplicas) -}}
{{- end -}}
rayVersion: {{ $.Values.rayVersion | quote }}
authOptions:
  mode: {{ $.Values.ray.auth.mode }}
  {{- if eq $.Values.ray.auth.mode "token" }}
  secretName: {{ $.Values.secrets.name }}
  {{- end }}
enableInTreeAutoscaling: true
autoscalerOptions:
  upscalingMode: {{ $.Values.autoscaler.upscalingMode }}
  idleTimeoutSeconds: {{ $.Values.autoscaler.idleTimeoutSeconds }}
  resources:
    requests: {cpu: 200m, memory: 256Mi}
    limits: {cpu: 500m, memory: 512Mi}
headGroupSpec:
  {{- if .service }}
  serviceType: {{ $.Values.service.serviceType }}
  {{- end }}
  rayStartParams:
    dashboard-host: "0.0.0.0"
    num-cpus: {{ $.Values.head.numCpus | quote }}
  template:
    {{- include "lwmecps.rayPod" (dict "root" $ "head" true "service" .service "node" $.Values.head) | nindent 4 }}
workerGroupSpecs:
  - groupName: {{ $.Values.workers.groupName }}
    replicas: {{ $w.replicas | default $w.minReplicas }}
    minReplicas: {{ $w.minReplicas }}
    maxReplicas: {{ $w.maxReplicas }}
    rayStartParams: {}
    template:
      {{- include "lwmecps.rayPod" (dict "root" $ "head" false "service" .service "node" $.Values.workers) | nindent 6 }}
{{- end -}}
