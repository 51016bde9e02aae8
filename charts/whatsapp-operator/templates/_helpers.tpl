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

{{/* An image reference [registry/]repository[:tag][@digest] from `.image` (registry, repository,
     tag, digest). global.imageRegistry wins over the image's registry; a repository that names
     its own registry (first part with a dot or colon, or localhost: Docker's rule) is used as
     is. The tag defaults to the chart's appVersion; with a digest the pull is by digest and an
     explicit tag is kept only as a label for people. */}}
{{- define "wa.image" -}}
{{- $img := .image -}}
{{- $global := (.root.Values.global | default dict) -}}
{{- $first := first (splitList "/" $img.repository) -}}
{{- $named := and (gt (len (splitList "/" $img.repository)) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) -}}
{{- $registry := default ($img.registry | default "") ($global.imageRegistry | default "") -}}
{{- $ref := $img.repository -}}
{{- if and $registry (not $named) }}{{ $ref = printf "%s/%s" $registry $img.repository }}{{ end -}}
{{- if $img.digest -}}
{{- if $img.tag }}{{ $ref = printf "%s:%s" $ref $img.tag }}{{ end -}}
{{- printf "%s@%s" $ref $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* Labels of the pods of a component: the selector labels plus version and chart (so a pod
     says which release of the chart made it), then podLabels. */}}
{{- define "wa.podLabels" -}}
{{ include "wa.labels" . }}
{{- with .values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Scheduling of a replicated component (`.values`: operator or hub values): its affinity, or
     with more than one replica and none given a preferred anti-affinity across nodes, so one
     node's loss does not take every replica; topologySpreadConstraints get the selector
     labels when they have none. */}}
{{- define "wa.scheduling" -}}
{{- $sel := include "wa.selectorLabels" . | fromYaml -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .values.affinity }}
affinity:
  {{- toYaml .values.affinity | nindent 2 }}
{{- else if gt (int .values.replicas) 1 }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- toYaml $sel | nindent 14 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range . }}
  - {{ toYaml (merge (deepCopy .) (dict "labelSelector" (dict "matchLabels" $sel))) | nindent 4 | trim }}
  {{- end }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/* A PodDisruptionBudget for a component running more than one replica. */}}
{{- define "wa.pdb" -}}
{{- if and .values.podDisruptionBudget.enabled (gt (int .values.replicas) 1) }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "wa.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "wa.selectorLabels" . | nindent 6 }}
{{- end }}
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
{{- range (include "wa.sessionNamespaceEntries" . | fromJsonArray) }}{{ $all = append $all .name }}{{ end -}}
{{- $all | uniq | toJson -}}
{{- end -}}

{{/* sessionNamespaces.names as [{name, tenants}]: a string entry is a namespace of the tenant
     of the same name; an object entry names its tenants (`tenants` left out: the namespace's
     name, as for a string; `[]`: none). */}}
{{- define "wa.sessionNamespaceEntries" -}}
{{- $out := list -}}
{{- range .Values.sessionNamespaces.names -}}
{{- if kindIs "string" . -}}
{{- $out = append $out (dict "name" . "tenants" (list .)) -}}
{{- else -}}
{{- $out = append $out (dict "name" .name "tenants" (ternary .tenants (list .name) (hasKey . "tenants"))) -}}
{{- end -}}
{{- end -}}
{{- $out | toJson -}}
{{- end -}}

{{/* The label by which a namespace may hold sessions of tenant `.` (README "Security model";
     the tenant-claims policy checks it, the hub trusts it). */}}
{{- define "wa.tenantClaimLabel" -}}
tenant.whatsapp.leadmaster.io/{{ . }}
{{- end -}}

{{/* The egress rules every component's NetworkPolicy shares: DNS and the Kubernetes API server.
     A NetworkPolicy cannot name the API server nor a DNS server that is not a pod (a node-run
     or NodeLocal resolver), so addresses are read from the cluster at install (helm `lookup` of
     the `kubernetes` and `kube-dns` EndpointSlices) unless given; `helm template` sees no
     cluster and renders the fallbacks (API ports to any address, DNS to pods only). */}}
{{- define "wa.netpol.baseEgress" -}}
{{- $np := .Values.networkPolicy -}}
{{- if $np.dns }}
{{- $dnsIPs := list -}}
{{- range (lookup "discovery.k8s.io/v1" "EndpointSlice" "kube-system" "").items | default list -}}
{{- if eq (index (.metadata.labels | default dict) "kubernetes.io/service-name" | default "") "kube-dns" -}}
{{- range .endpoints | default list }}{{ range .addresses }}{{ $dnsIPs = append $dnsIPs . }}{{ end }}{{ end -}}
{{- end -}}
{{- end }}
- to:
    - namespaceSelector: {}
    {{- range $dnsIPs | uniq }}
    - ipBlock: {cidr: {{ . }}/32}
    {{- end }}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end }}
{{- $cidrs := $np.apiServer.cidrs -}}
{{- $ports := $np.apiServer.ports -}}
{{- if not $cidrs -}}
{{- with lookup "discovery.k8s.io/v1" "EndpointSlice" "default" "kubernetes" -}}
{{- $found := list -}}
{{- range .endpoints | default list }}{{ range .addresses }}{{ $found = append $found (printf "%s/32" .) }}{{ end }}{{ end -}}
{{- $foundPorts := list -}}
{{- range .ports | default list }}{{ $foundPorts = append $foundPorts .port }}{{ end -}}
{{- if and $found $foundPorts }}{{ $cidrs = $found }}{{ $ports = $foundPorts }}{{ end -}}
{{- end -}}
{{- end }}
- ports:
    {{- range $ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
  {{- with $cidrs }}
  to:
    {{- range . }}
    - ipBlock: {cidr: {{ . }}}
    {{- end }}
  {{- end }}
{{- end -}}
