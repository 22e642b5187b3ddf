{{/* Chart name. */}}
{{- define "orderflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: the release name if it already contains the chart name. */}}
{{- define "orderflow.fullname" -}}
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

{{- define "orderflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels common to every object (combine with selectorLabels or baseLabels). */}}
{{- define "orderflow.labels" -}}
helm.sh/chart: {{ include "orderflow.chart" . }}
app.kubernetes.io/part-of: orderflow
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* Labels of objects that belong to no single component. */}}
{{- define "orderflow.baseLabels" -}}
{{ include "orderflow.labels" . }}
app.kubernetes.io/name: {{ include "orderflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one component. Context: dict "root" $ "name" <component>. */}}
{{- define "orderflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orderflow.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* Name of a component's objects (Deployment, Service, ...). Context: dict "root" $ "name" <component>. */}}
{{- define "orderflow.componentName" -}}
{{- printf "%s-%s" (include "orderflow.fullname" .root | trunc 50 | trimSuffix "-") .name -}}
{{- end -}}

{{- define "orderflow.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* CloudNativePG cluster name. */}}
{{- define "orderflow.pgCluster" -}}
{{- printf "%s-pg" (include "orderflow.fullname" . | trunc 50 | trimSuffix "-") -}}
{{- end -}}

{{/* Name the NATS subchart gives its objects (mirrors nats.fullname). */}}
{{- define "orderflow.natsFullname" -}}
{{- $nats := .Values.nats | default dict -}}
{{- if $nats.fullnameOverride -}}
{{- $nats.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default "nats" $nats.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Copies of each saga stream: up to 3 on the bundled NATS's cluster (1 without one), as set for an external NATS. */}}
{{- define "orderflow.natsStreamReplicas" -}}
{{- if .Values.nats.enabled -}}
{{- $cluster := (.Values.nats.config | default dict).cluster | default dict -}}
{{- if $cluster.enabled -}}{{- min 3 (int ($cluster.replicas | default 3)) -}}{{- else -}}1{{- end -}}
{{- else -}}
{{- .Values.externalNats.streamReplicas | default 1 -}}
{{- end -}}
{{- end -}}

{{/* Bytes in a Kubernetes quantity ("10Gi", "1.5G", "512Mi"); fails naming the value when it is not one. */}}
{{- define "orderflow.quantityBytes" -}}
{{- $value := .value | toString -}}
{{- $units := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $value -}}
{{- $unit := trimPrefix $number $value -}}
{{- if not (and $number (hasKey $units $unit)) -}}
{{- fail (printf "%s (%s): give a number with one of the units Ki, Mi, Gi, Ti, k, M, G, T" .name $value) -}}
{{- end -}}
{{- mulf (float64 $number) (index $units $unit) | floor | int64 -}}
{{- end -}}

{{/*
Most bytes each saga stream (and the dead letters) holds. On the bundled NATS, three quarters
of its file store shared by the 7 saga streams and the dead letters (each server holds a copy
of every stream), so that they cannot fill it: a full store refuses every publish. For an
external NATS, externalNats.streamMaxBytes (-1: no bound).
*/}}
{{- define "orderflow.natsStreamMaxBytes" -}}
{{- if .Values.nats.enabled -}}
{{- $fileStore := dig "config" "jetstream" "fileStore" dict .Values.nats -}}
{{- $size := $fileStore.maxSize | default (dig "pvc" "size" "" $fileStore) -}}
{{- if $size -}}
{{- div (mul (include "orderflow.quantityBytes" (dict "value" $size "name" "nats.config.jetstream.fileStore size") | int64) 3) 32 -}}
{{- else -}}-1{{- end -}}
{{- else -}}
{{- .Values.externalNats.streamMaxBytes | default -1 | int64 -}}
{{- end -}}
{{- end -}}

{{- define "orderflow.natsUrl" -}}
{{- if .Values.nats.enabled -}}
{{- printf "nats://%s.%s.svc:4222" (include "orderflow.natsFullname" .) .Release.Namespace -}}
{{- else -}}
{{- required "externalNats.url is required when nats.enabled is false" .Values.externalNats.url -}}
{{- end -}}
{{- end -}}

{{/* Pod labels/annotations that switch mesh injection. */}}
{{- define "orderflow.meshPodLabels" -}}
{{- if eq .Values.mesh "istio" -}}
sidecar.istio.io/inject: "true"
{{- end -}}
{{- end -}}

{{- define "orderflow.meshPodAnnotations" -}}
{{- if eq .Values.mesh "linkerd" -}}
linkerd.io/inject: enabled
config.linkerd.io/default-inbound-policy: deny
{{- with .Values.linkerd.skipOutboundPorts }}
config.linkerd.io/skip-outbound-ports: {{ join "," . | quote }}
{{- end }}
{{- else if eq .Values.mesh "istio" -}}
{{- with .Values.istio.excludeOutboundPorts }}
traffic.sidecar.istio.io/excludeOutboundPorts: {{ join "," . | quote }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* Labels/annotations that keep a backend (Redis, CNPG, NATS) out of the mesh. */}}
{{- define "orderflow.noMeshLabels" -}}
sidecar.istio.io/inject: "false"
{{- end -}}
{{- define "orderflow.noMeshAnnotations" -}}
linkerd.io/inject: disabled
{{- end -}}

{{/* Service appProtocol for the gRPC port: Linkerd treats anything but http / kubernetes.io/h2c as opaque TCP. */}}
{{- define "orderflow.grpcAppProtocol" -}}
{{- if eq .Values.mesh "linkerd" -}}
kubernetes.io/h2c
{{- else if eq .Values.mesh "istio" -}}
grpc
{{- else -}}
kubernetes.io/h2c
{{- end -}}
{{- end -}}

{{/* A service's node command, up to its entry point: node and common.nodeFlags, each followed by a comma. */}}
{{- define "orderflow.nodeCommandStart" -}}
"node", {{ range .Values.common.nodeFlags }}{{ . | quote }}, {{ end }}
{{- end -}}

{{/* Restricted container securityContext. */}}
{{- define "orderflow.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "orderflow.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsGroup }}
fsGroup: {{ .Values.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Database environment of a service. Context: dict "root" $ "name" <service>.
CloudNativePG: DATABASE_URL is the -app secret's uri (the -rw service);
DATABASE_READ_URL is built from the same secret's credentials with host -r (every
instance: -ro has no endpoints while the only replica is drained or not yet joined,
and reads would fail although the primary could answer them).
*/}}
{{- define "orderflow.databaseEnv" -}}
{{- $root := .root -}}
{{- $pg := $root.Values.postgres -}}
{{- if eq $pg.mode "cnpg" -}}
{{- $cluster := include "orderflow.pgCluster" $root }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $cluster }}-app
      key: uri
{{- if and $pg.readReplicas (gt (int $pg.cnpg.instances) 1) }}
- name: DB_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $cluster }}-app
      key: username
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $cluster }}-app
      key: password
- name: DB_NAME
  valueFrom:
    secretKeyRef:
      name: {{ $cluster }}-app
      key: dbname
- name: DATABASE_READ_URL
  value: {{ printf "postgresql://$(DB_USERNAME):$(DB_PASSWORD)@%s-r.%s.svc:5432/$(DB_NAME)" $cluster $root.Release.Namespace | quote }}
{{- end }}
{{- else }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "postgres.external.existingSecret is required when postgres.mode is external" $pg.external.existingSecret }}
      key: {{ $pg.external.uriKey }}
{{- if and $pg.readReplicas $pg.external.readUriKey }}
- name: DATABASE_READ_URL
  valueFrom:
    secretKeyRef:
      name: {{ $pg.external.existingSecret }}
      key: {{ $pg.external.readUriKey }}
{{- end }}
{{- end }}
- name: DATABASE_POOL_MAX
  value: {{ $pg.poolMax | quote }}
- name: DATABASE_BACKGROUND_POOL_MAX
  value: {{ $pg.backgroundPoolMax | quote }}
{{- end -}}

{{- define "orderflow.redisEnv" -}}
{{- $root := .root -}}
{{- if $root.Values.redis.enabled }}
- name: REDIS_URL
  value: {{ printf "redis://%s.%s.svc:6379" (include "orderflow.componentName" (dict "root" $root "name" "redis")) $root.Release.Namespace | quote }}
{{- else if $root.Values.redis.external.existingSecret }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.redis.external.existingSecret }}
      key: {{ $root.Values.redis.external.key }}
{{- else }}
- name: REDIS_URL
  value: {{ required "redis.external.url or redis.external.existingSecret is required when redis.enabled is false" $root.Values.redis.external.url | quote }}
{{- end }}
{{- end -}}

{{/* Full environment of a service container. Context: dict "root" $ "name" <service> "svc" <values>. */}}
{{- define "orderflow.serviceEnv" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
- name: PORT
  value: {{ $root.Values.ports.grpc | quote }}
- name: METRICS_PORT
  value: {{ $root.Values.ports.metrics | quote }}
- name: LOG_LEVEL
  value: {{ $root.Values.logLevel | quote }}
{{- /* Istio's sidecar forwards HTTP/1.1 Connect requests to a gRPC port over HTTP/2: then connect-node must serve HTTP/2 too. */}}
- name: RPC_TRANSPORT
  value: {{ ternary "connect" "grpc-js" (eq $root.Values.mesh "istio") | quote }}
- name: NODE_ENV
  value: production
- name: SHUTDOWN_GRACE_MS
  value: {{ mul (max 1 (sub (sub (int $root.Values.common.terminationGracePeriodSeconds) (int $root.Values.common.preStopSleepSeconds)) 5)) 1000 | quote }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: OTEL_SERVICE_NAME
  value: {{ .name | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "service.namespace=%s,k8s.pod.name=$(K8S_POD_NAME),k8s.namespace.name=$(K8S_NAMESPACE)%s" $root.Release.Name (ternary (printf ",%s" $root.Values.otel.resourceAttributes) "" (ne $root.Values.otel.resourceAttributes "")) | quote }}
{{- if $root.Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $root.Values.otel.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $root.Values.otel.protocol | quote }}
- name: OTEL_TRACES_EXPORTER
  value: otlp
{{- else }}
- name: OTEL_TRACES_EXPORTER
  value: none
{{- end }}
- name: OTEL_METRICS_EXPORTER
  value: none
- name: OTEL_LOGS_EXPORTER
  value: none
- name: NATS_URL
  value: {{ include "orderflow.natsUrl" $root | quote }}
- name: NATS_STREAM_REPLICAS
  value: {{ include "orderflow.natsStreamReplicas" $root | quote }}
- name: NATS_STREAM_MAX_BYTES
  value: {{ include "orderflow.natsStreamMaxBytes" $root | quote }}
{{- if $svc.database }}
{{ include "orderflow.databaseEnv" . }}
{{- end }}
{{- if $svc.redis }}
{{- include "orderflow.redisEnv" . }}
{{- end }}
{{- range $callee := $svc.calls }}
- name: {{ printf "%s_URL" (upper $callee) }}
  value: {{ printf "http://%s.%s.svc:%v" (include "orderflow.componentName" (dict "root" $root "name" $callee)) $root.Release.Namespace $root.Values.ports.grpc | quote }}
{{- end }}
{{- range $k, $v := $root.Values.common.env }}
{{- if not (hasKey ($svc.env | default dict) $k) }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end }}
{{- range $k, $v := $svc.env }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- with $root.Values.common.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with $svc.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
