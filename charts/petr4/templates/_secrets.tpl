{{/* What petr4-secrets makes (secrets-job.yaml), as a JSON list: each Secret of the chart's
own that the user did not name (existingSecret), by name, kind and labels. */}}
{{- define "petr4.secretsSpec" -}}
{{- $spec := list }}
{{- if include "petr4.mlflowAccounts" . }}
{{- $labels := include "petr4.selectorLabels" (dict "root" . "component" "mlflow") | fromYaml }}
{{- if not .Values.mlflow.auth.existingSecret }}
{{- $spec = append $spec (dict "name" (include "petr4.mlflowAdminSecret" .) "kind" "mlflow-account" "username" "admin" "secretKey" true "labels" $labels) }}
{{- end }}
{{- range $role := list "ingest" "train" "serve" }}
{{- $spec = append $spec (dict "name" (include "petr4.mlflowUserSecret" (dict "root" $ "role" $role)) "kind" "mlflow-account" "username" (printf "petr4-%s" $role) "labels" $labels) }}
{{- end }}
{{- end }}
{{- if and .Values.predictor.auth.enabled (not .Values.predictor.auth.existingSecret) }}
{{- $labels := include "petr4.selectorLabels" (dict "root" . "component" "predictor") | fromYaml }}
{{- $spec = append $spec (dict "name" (include "petr4.predictorTokenSecret" .) "kind" "token" "key" "tokens" "labels" $labels) }}
{{- end }}
{{- $tls := .Values.predictor.tls }}
{{- if and $tls.enabled (not $tls.existingSecret) (not (.Capabilities.APIVersions.Has "cert-manager.io/v1")) }}
{{- $labels := include "petr4.selectorLabels" (dict "root" . "component" "predictor") | fromYaml }}
{{- $names := include "petr4.predictorNames" . | fromJsonArray }}
{{- $spec = append $spec (dict "name" (include "petr4.predictorTlsSecret" .) "kind" "tls" "commonName" (index $names 1) "dnsNames" $names "ipAddresses" (list "127.0.0.1") "days" 825 "caName" (printf "%s-ca" (include "petr4.fullname" .)) "labels" $labels) }}
{{- end }}
{{- if and .Values.retrainer.enabled (not .Values.retrainer.token.existingSecret) }}
{{- $labels := include "petr4.selectorLabels" (dict "root" . "component" "retrainer") | fromYaml }}
{{- $spec = append $spec (dict "name" (include "petr4.retrainerTokenSecret" .) "kind" "token" "key" "token" "labels" $labels) }}
{{- end }}
{{- toJson $spec -}}
{{- end -}}
