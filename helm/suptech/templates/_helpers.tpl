{{/* Object name prefix: "<release>-suptech", or the release name when it already says suptech. */}}
{{- define "suptech.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "suptech.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ default .Chart.Name .Values.nameOverride }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: suptech
{{- end -}}

{{/* Selector labels of one component; call with (dict "root" $ "component" "gateway"). */}}
{{- define "suptech.selectorLabels" -}}
app.kubernetes.io/name: {{ default .root.Chart.Name .root.Values.nameOverride }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "suptech.secretName" -}}
{{- if .Values.secrets.create -}}
{{- printf "%s-secrets" (include "suptech.fullname" .) -}}
{{- else -}}
{{- required "secrets.existingSecret is required when secrets.create is false" .Values.secrets.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "suptech.kafkaAddr" -}}
{{- if .Values.kafka.enabled -}}
{{- printf "%s-kafka:9092" (include "suptech.fullname" .) -}}
{{- else -}}
{{- required "kafka.externalAddr is required when kafka.enabled is false" .Values.kafka.externalAddr -}}
{{- end -}}
{{- end -}}

{{- define "suptech.serviceAccountName" -}}
{{- include "suptech.fullname" . -}}
{{- end -}}

{{/* Pod-level hardening shared by every pod of the chart; uid 10001 is the image's user. */}}
{{- define "suptech.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "suptech.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Restarts pods when the Secret or ConfigMap they read changes. */}}
{{- define "suptech.configChecksums" -}}
checksum/config: {{ include (print .Template.BasePath "/config.yaml") . | sha256sum }}
{{- end -}}

{{/*
Bootstrap servers for KEDA's operator, which runs in its own namespace: the bundled brokers by
their pod names under the headless Service (fully qualified, and matching the brokers' TLS SAN
*.<fullname>-kafka-headless.<namespace>.svc), else kafka.externalAddr; autoscaling.bootstrapServers
overrides both. Call with (dict "root" $ "auto" $c.autoscaling).
*/}}
{{- define "suptech.kafkaBootstrapForKeda" -}}
{{- $k := .root.Values.kafka -}}
{{- if .auto.bootstrapServers -}}
{{- .auto.bootstrapServers -}}
{{- else if $k.enabled -}}
{{- $fullname := printf "%s-kafka" (include "suptech.fullname" .root) -}}
{{- $brokers := list -}}
{{- range $i := until (int $k.replicas) -}}
{{- $brokers = append $brokers (printf "%s-%d.%s-headless.%s.svc:9092" $fullname $i $fullname $.root.Release.Namespace) -}}
{{- end -}}
{{- join "," $brokers -}}
{{- else -}}
{{- required "kafka.externalAddr is required when kafka.enabled is false" $k.externalAddr -}}
{{- end -}}
{{- end -}}

{{/* Whether any enabled component is scaled by KEDA ("true" or ""). */}}
{{- define "suptech.kedaUsed" -}}
{{- range $name, $c := .Values.components -}}
{{- if and $c.enabled ($c.autoscaling | default dict).enabled -}}true{{- end -}}
{{- end -}}
{{- end -}}
