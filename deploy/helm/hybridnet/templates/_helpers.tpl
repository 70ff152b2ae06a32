{{/*
Names shared by the templates. Object names are fixed (the manager and the daemons find each
other's objects by them, see the README's "Names"): one release per cluster.
*/}}

{{/* Labels of every object: (dict "context" $ "name" "hybridnet-manager"). The selectors use
app.kubernetes.io/name alone, which never changes across upgrades. */}}
{{- define "hybridnet.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/part-of: hybridnet
app.kubernetes.io/version: {{ .context.Chart.AppVersion | quote }}
{{- end }}

{{/* The image of every container. */}}
{{- define "hybridnet.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Annotations of the CRDs: kept on uninstall unless crds.keep is false. */}}
{{- define "hybridnet.crdAnnotations" -}}
{{- if .Values.crds.keep -}}
annotations:
  helm.sh/resource-policy: keep
{{- end }}
{{- end }}

{{/* Whether the manager keeps its own webhook certificates in the Secret (not cert-manager). */}}
{{- define "hybridnet.selfManagedCerts" -}}
{{- if and .Values.webhook.enabled (not .Values.webhook.certManager.enabled) }}true{{ end }}
{{- end }}

{{/* A pod-template annotation that changes whenever the settings do, so `helm upgrade` with
new settings replaces the pods (they read the ConfigMap only at start). */}}
{{- define "hybridnet.configChecksum" -}}
checksum/config: {{ include (print $.Template.BasePath "/config/configmap.yaml") . | sha256sum | trunc 16 | quote }}
{{- end }}

{{/* An environment variable from the ConfigMap hybridnet-config: (list "NAME" "key"). */}}
{{- define "hybridnet.configEnv" -}}
- name: {{ index . 0 }}
  valueFrom:
    configMapKeyRef:
      name: hybridnet-config
      key: {{ index . 1 }}
{{- end }}

{{/* The API server's address for in-cluster clients (values apiServer.*), included when
apiServer.host is set: it overrides what kubelet puts into the container's environment for the
`kubernetes` Service, so a cluster without kube-proxy works. */}}
{{- define "hybridnet.apiServerEnv" -}}
- name: KUBERNETES_SERVICE_HOST
  value: {{ .Values.apiServer.host | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ .Values.apiServer.port | int64 | quote }}
{{- end }}
