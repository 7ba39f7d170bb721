{{/* Names, labels and shared pieces. Every object takes its name and labels from here. */}}

{{- define "petr4.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "petr4.fullname" -}}
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

{{/* The name of one component's objects: <fullname>-<component>. */}}
{{- define "petr4.componentName" -}}
{{- printf "%s-%s" (include "petr4.fullname" .root) .component -}}
{{- end -}}

{{- define "petr4.selectorLabels" -}}
app.kubernetes.io/name: {{ include "petr4.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "petr4.labels" -}}
{{ include "petr4.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: petr4
{{- end -}}

{{- define "petr4.mlflowUri" -}}
{{- if .Values.mlflow.enabled -}}
{{- printf "http://%s:%v" (include "petr4.componentName" (dict "root" . "component" "mlflow")) .Values.mlflow.port -}}
{{- else -}}
{{- required "mlflow.externalUri is required when mlflow.enabled is false" .Values.mlflow.externalUri -}}
{{- end -}}
{{- end -}}

{{/* Non-empty when the bundled MLflow keeps something on its volume: the SQLite store, or the artifacts. */}}
{{- define "petr4.mlflowOnVolume" -}}
{{- if or (not .Values.mlflow.backend.existingSecret) (not .Values.mlflow.artifacts.destination) -}}
true
{{- end -}}
{{- end -}}

{{/* A ticker as it may appear in an object's name: PETR4.SA -> petr4-sa. */}}
{{- define "petr4.tickerSlug" -}}
{{- . | lower | replace "." "-" | replace "^" "" -}}
{{- end -}}

{{/* The Secret holding the retraining receiver's shared token: the user's, or the chart's own. */}}
{{- define "petr4.retrainerTokenSecret" -}}
{{- .Values.retrainer.token.existingSecret | default (include "petr4.componentName" (dict "root" . "component" "retrainer-token")) -}}
{{- end -}}

{{/* The predictor's TLS Secret: the user's, or the one the chart (or cert-manager) fills. */}}
{{- define "petr4.predictorTlsSecret" -}}
{{- .Values.predictor.tls.existingSecret | default (include "petr4.componentName" (dict "root" . "component" "predictor-tls")) -}}
{{- end -}}

{{/* The predictor's accepted tokens: the user's Secret, or the chart's own. */}}
{{- define "petr4.predictorTokenSecret" -}}
{{- .Values.predictor.auth.existingSecret | default (include "petr4.componentName" (dict "root" . "component" "predictor-tokens")) -}}
{{- end -}}

{{/* Every name the predictor is called by: its Services' in-cluster names, and loopback for port-forwards. */}}
{{- define "petr4.predictorNames" -}}
{{- $names := list "localhost" }}
{{- range $service := list "predictor" "predictor-headless" }}
{{- $name := include "petr4.componentName" (dict "root" $ "component" $service) }}
{{- range $suffix := list "" (printf ".%s" $.Release.Namespace) (printf ".%s.svc" $.Release.Namespace) (printf ".%s.svc.cluster.local" $.Release.Namespace) }}
{{- $names = append $names (printf "%s%s" $name $suffix) }}
{{- end }}
{{- end }}
{{- toJson (concat $names .Values.predictor.tls.extraDnsNames) -}}
{{- end -}}

{{/* MLflow's admin Secret (password, secret-key, and credentials as MLflow's client file
reads them): the user's, or the chart's own. */}}
{{- define "petr4.mlflowAdminSecret" -}}
{{- .Values.mlflow.auth.existingSecret | default (include "petr4.componentName" (dict "root" . "component" "mlflow-admin")) -}}
{{- end -}}

{{/* One component's MLflow account (username, password, and the two as MLflow's client
credentials file), a Secret per role. */}}
{{- define "petr4.mlflowUserSecret" -}}
{{- include "petr4.componentName" (dict "root" .root "component" (printf "mlflow-user-%s" .role)) -}}
{{- end -}}

{{/* Where MLflow has accounts, one role's credentials (.role: ingest, train, serve) are its
Secret's "credentials" file, mounted where MLflow's client reads it at every request
($HOME/.mlflow/credentials; HOME is /tmp in the images): a rotated password needs no restart. */}}
{{- define "petr4.mlflowAccounts" -}}
{{- if and .Values.mlflow.enabled .Values.mlflow.auth.enabled }}true{{ end -}}
{{- end -}}

{{- define "petr4.mlflowCredentialsMount" -}}
{{- if include "petr4.mlflowAccounts" .root }}
- {name: mlflow-{{ .role }}, mountPath: /tmp/.mlflow, readOnly: true}
{{- end }}
{{- end -}}

{{- define "petr4.mlflowCredentialsVolume" -}}
{{- if include "petr4.mlflowAccounts" .root }}
- name: mlflow-{{ .role }}
  secret:
    secretName: {{ include "petr4.mlflowUserSecret" . }}
    defaultMode: 0440  # its owner and the pod's group read; no one else
    items: [{key: credentials, path: credentials}]
{{- end }}
{{- end -}}

{{/* Environment every container of the chart gets: MLflow 3 sends usage telemetry unless told not to. */}}
{{- define "petr4.commonEnv" -}}
- name: MLFLOW_DISABLE_TELEMETRY
  value: "true"
{{- end -}}

{{/* repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "petr4.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}

{{/*
checkov findings this chart does not follow, each with its reason. Rendered on every workload.
*/}}
{{- define "petr4.checkovSkips" -}}
checkov.io/skip1: CKV_K8S_11=no CPU limit by design - a limit throttles latency-sensitive gRPC and bursty training; the CPU request reserves the share and the memory limit bounds the pod
checkov.io/skip2: CKV_K8S_15=IfNotPresent by design - skaffold loads locally built images into kind, where Always would fail to pull them
checkov.io/skip3: CKV_K8S_43=tags, not digests - skaffold's inputDigest tags are content-addressed, and images loaded into kind have no registry digest
{{- end -}}

{{/* The restricted Pod Security Standard, for every pod and container. */}}
{{- define "petr4.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "petr4.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* The ConfigMap holding the ticker list every Job reads. */}}
{{- define "petr4.tickersConfigMap" -}}
{{- include "petr4.componentName" (dict "root" . "component" "tickers") -}}
{{- end -}}

{{/* An environment variable holding the ticker list as JSON, from the tickers ConfigMap. */}}
{{- define "petr4.tickersEnv" -}}
- name: {{ .name }}
  valueFrom:
    configMapKeyRef:
      name: {{ include "petr4.tickersConfigMap" .root }}
      key: tickers
{{- end -}}

{{/* The trainer image's pod: used by the ingestion CronJob and the trainer Job and CronJob.
.command runs in the container, .env adds to its environment. */}}
{{/* The CSV prices of ingestion.csvConfigMap, where a csv: source can read them. */}}
{{- define "petr4.pricesMount" -}}
{{- if .Values.ingestion.csvConfigMap }}
- {name: prices, mountPath: /etc/petr4/prices, readOnly: true}
{{- end }}
{{- end -}}

{{- define "petr4.jobPodSpec" -}}
serviceAccountName: {{ include "petr4.componentName" (dict "root" .root "component" "jobs") }}
automountServiceAccountToken: false
restartPolicy: Never
securityContext:
  {{- include "petr4.podSecurityContext" . | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .ingestFirst }}
initContainers:
  - name: ingest-if-missing
    image: {{ include "petr4.image" (dict "image" .root.Values.images.trainer "root" .root) }}
    imagePullPolicy: {{ .root.Values.images.trainer.pullPolicy }}
    command: ["petr4-ingest", "--if-missing", "--source", {{ .root.Values.ingestion.source | quote }}]
    env:
      - name: MLFLOW_TRACKING_URI
        value: {{ include "petr4.mlflowUri" .root | quote }}
      {{- include "petr4.tickersEnv" (dict "root" .root "name" "PETR4_INGEST_TICKERS") | nindent 6 }}
      # MLflow may start after this pod, and its accounts Job after it: wait for both.
      - name: PETR4_INGEST_MLFLOW_WAIT_SECONDS
        value: "600"
      {{- include "petr4.commonEnv" . | nindent 6 }}
    securityContext:
      {{- include "petr4.containerSecurityContext" . | nindent 6 }}
    resources:
      {{- toYaml .root.Values.ingestion.resources | nindent 6 }}
    volumeMounts:
      - {name: tmp, mountPath: /tmp}
      {{- include "petr4.mlflowCredentialsMount" (dict "root" .root "role" "ingest") | nindent 6 }}
      {{- include "petr4.pricesMount" .root | nindent 6 }}
{{- end }}
containers:
  - name: {{ .container }}
    image: {{ include "petr4.image" (dict "image" .root.Values.images.trainer "root" .root) }}
    imagePullPolicy: {{ .root.Values.images.trainer.pullPolicy }}
    command: {{ toJson .command }}
    env:
      - name: MLFLOW_TRACKING_URI
        value: {{ include "petr4.mlflowUri" .root | quote }}
      - name: PETR4_{{ .envPrefix }}_JSON_LOGS
        value: "true"
      - name: PETR4_{{ .envPrefix }}_MLFLOW_WAIT_SECONDS
        value: "600"
      {{- with .env }}
      {{- . | nindent 6 }}
      {{- end }}
      {{- include "petr4.commonEnv" . | nindent 6 }}
    securityContext:
      {{- include "petr4.containerSecurityContext" . | nindent 6 }}
    resources:
      {{- toYaml .resources | nindent 6 }}
    volumeMounts:
      - {name: tmp, mountPath: /tmp}
      {{- include "petr4.mlflowCredentialsMount" (dict "root" .root "role" .role) | nindent 6 }}
      {{- if eq .role "ingest" }}
      {{- include "petr4.pricesMount" .root | nindent 6 }}
      {{- end }}
volumes:
  - name: tmp
    emptyDir: {}
  {{- if and .root.Values.ingestion.csvConfigMap (or .ingestFirst (eq .role "ingest")) }}
  - name: prices
    configMap:
      name: {{ .root.Values.ingestion.csvConfigMap }}
  {{- end }}
  {{- include "petr4.mlflowCredentialsVolume" (dict "root" .root "role" .role) | nindent 2 }}
  {{- if .ingestFirst }}
  {{- include "petr4.mlflowCredentialsVolume" (dict "root" .root "role" "ingest") | nindent 2 }}
  {{- end }}
{{- end -}}

{{/*
A training Job's spec; it ingests first where no snapshot exists. .covers is what it trains:
"all" for the ticker list (trainer.mode pooled: one pooled network; per-ticker: an Indexed
Job, one index per ticker, JOB_COMPLETION_INDEX picking its ticker), or one ticker alone.
*/}}
{{- define "petr4.trainJobSpec" -}}
{{- $v := .root.Values }}
{{- $all := eq .covers "all" }}
{{- $indexed := and $all (eq $v.trainer.mode "per-ticker") }}
{{- $command := concat (list "petr4-train") (ternary (list) (list "--ticker" .covers) $all) $v.trainer.extraArgs }}
{{- $env := "" }}
{{- if $all }}
{{- $env = include "petr4.tickersEnv" (dict "root" .root "name" "PETR4_TRAIN_TICKERS") }}
{{- end }}
{{- if $indexed }}
{{- $env = printf "%s\n- name: PETR4_TRAIN_INDEX\n  valueFrom:\n    fieldRef:\n      fieldPath: metadata.annotations['batch.kubernetes.io/job-completion-index']" $env -}}
completionMode: Indexed
completions: {{ len $v.tickers }}
parallelism: {{ $v.trainer.perTicker.parallelism }}
backoffLimitPerIndex: {{ $v.trainer.perTicker.backoffLimitPerIndex }}
{{- else -}}
backoffLimit: {{ $v.trainer.backoffLimit }}
{{- end }}
activeDeadlineSeconds: {{ $v.trainer.activeDeadlineSeconds }}
template:
  metadata:
    labels:
      {{- include "petr4.labels" (dict "root" .root "component" "train") | nindent 6 }}
      petr4.io/covers: {{ ternary "all" (include "petr4.tickerSlug" .covers) $all }}
    annotations:
      petr4.io/training-revision: {{ $v.trainer.job.revision | quote }}
      # The list is read from the tickers ConfigMap: a new list is a new Job.
      checksum/tickers: {{ toJson $v.tickers | sha256sum | trunc 16 | quote }}
  spec:
    # A SIGTERM before registration ends the training at once; one during it waits for the
    # pass to finish, and this is how long it may take.
    terminationGracePeriodSeconds: {{ $v.trainer.terminationGracePeriodSeconds }}
    {{- include "petr4.jobPodSpec" (dict "root" .root "container" "train" "role" "train" "command" $command "env" $env "envPrefix" "TRAIN" "resources" $v.trainer.resources "ingestFirst" true) | nindent 4 }}
{{- end -}}

{{/* The accounts Job's spec: petr4-accounts as MLflow's admin, each role's Secret mounted. */}}
{{- define "petr4.accountsJobSpec" -}}
backoffLimit: 3
activeDeadlineSeconds: 1800
template:
  metadata:
    labels:
      {{- include "petr4.labels" (dict "root" . "component" "accounts") | nindent 6 }}
  spec:
    serviceAccountName: {{ include "petr4.componentName" (dict "root" . "component" "jobs") }}
    automountServiceAccountToken: false
    restartPolicy: Never
    securityContext:
      {{- include "petr4.podSecurityContext" . | nindent 6 }}
    {{- with .Values.imagePullSecrets }}
    imagePullSecrets:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    containers:
      - name: accounts
        image: {{ include "petr4.image" (dict "image" .Values.images.trainer "root" .) }}
        imagePullPolicy: {{ .Values.images.trainer.pullPolicy }}
        command: ["petr4-accounts", "--accounts-dir", "/etc/petr4/accounts"]
        env:
          - name: MLFLOW_TRACKING_URI
            value: {{ include "petr4.mlflowUri" . | quote }}
          - name: PETR4_ACCOUNTS_MLFLOW_WAIT_SECONDS
            value: "600"
          - name: PETR4_ACCOUNTS_JSON_LOGS
            value: "true"
          {{- include "petr4.commonEnv" . | nindent 10 }}
        securityContext:
          {{- include "petr4.containerSecurityContext" . | nindent 10 }}
        resources:
          requests: {cpu: 25m, memory: 128Mi}
          limits: {memory: 512Mi}
        volumeMounts:
          - {name: tmp, mountPath: /tmp}
          - {name: admin, mountPath: /tmp/.mlflow, readOnly: true}  # the admin's credentials
          {{- range $role := list "ingest" "train" "serve" }}
          - {name: {{ $role }}, mountPath: /etc/petr4/accounts/{{ $role }}, readOnly: true}
          {{- end }}
    volumes:
      - name: tmp
        emptyDir: {}
      - name: admin
        secret:
          secretName: {{ include "petr4.mlflowAdminSecret" . }}
          defaultMode: 0440  # its owner and the pod's group read; no one else
          items: [{key: credentials, path: credentials}]
      {{- range $role := list "ingest" "train" "serve" }}
      - name: {{ $role }}
        secret:
          secretName: {{ include "petr4.mlflowUserSecret" (dict "root" $ "role" $role) }}
          defaultMode: 0440  # its owner and the pod's group read; no one else
      {{- end }}
{{- end -}}

{{/* Egress every component needs: DNS, and the MLflow server (in the release or outside it). */}}
{{- define "petr4.egressToMlflow" -}}
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- if .Values.mlflow.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "petr4.selectorLabels" (dict "root" . "component" "mlflow") | nindent 10 }}
  ports:
    - {port: {{ .Values.mlflow.port }}, protocol: TCP}
{{- else }}
{{- $url := urlParse .Values.mlflow.externalUri }}
- ports:
    - {port: {{ (splitList ":" $url.host | rest | first) | default (ternary 443 80 (eq $url.scheme "https")) }}, protocol: TCP}
{{- end }}
{{- end -}}
