{{/*
Rules across values that values.schema.json cannot state. Each failure names the values, so a
setting that cannot work stops `helm install` instead of every daemon at run time. The table
and priority rules are the daemon's own (hybridnet/daemon/datapath/config.py, RoutingNumbers).
*/}}
{{- define "hybridnet.validate" -}}
{{- $t := .Values.config.tables -}}
{{- $p := .Values.config.rulePriorities -}}
{{- if gt (int64 $t.subnetFirst) (int64 $t.subnetLast) -}}
{{- fail (printf "config.tables.subnetFirst (%v) must not be above config.tables.subnetLast (%v)" $t.subnetFirst $t.subnetLast) -}}
{{- end -}}
{{- if eq (int64 $t.localPod) (int64 $t.overlay) -}}
{{- fail (printf "config.tables.localPod and config.tables.overlay must differ (both %v)" $t.localPod) -}}
{{- end -}}
{{- range $name := list "localPod" "overlay" -}}
{{- $table := int64 (get $t $name) -}}
{{- if and (ge $table 253) (le $table 255) -}}
{{- fail (printf "config.tables.%s (%v) is one of the kernel's own tables (253 default, 254 main, 255 local)" $name $table) -}}
{{- end -}}
{{- if and (ge $table (int64 $t.subnetFirst)) (le $table (int64 $t.subnetLast)) -}}
{{- fail (printf "config.tables.%s (%v) lies inside config.tables.subnetFirst..subnetLast (%v-%v)" $name $table $t.subnetFirst $t.subnetLast) -}}
{{- end -}}
{{- end -}}
{{- if and (le (int64 $t.subnetFirst) 255) (ge (int64 $t.subnetLast) 253) -}}
{{- fail (printf "config.tables.subnetFirst..subnetLast (%v-%v) must not include the kernel's tables 253, 254, 255" $t.subnetFirst $t.subnetLast) -}}
{{- end -}}
{{- if not (and (lt (int64 $p.localPod) (int64 $p.overlay)) (lt (int64 $p.overlay) (int64 $p.subnet))) -}}
{{- fail (printf "config.rulePriorities must rise localPod < overlay < subnet (%v, %v, %v)" $p.localPod $p.overlay $p.subnet) -}}
{{- end -}}
{{- $le := .Values.manager.leaderElection -}}
{{- if not (and (lt (float64 $le.retryPeriod) (float64 $le.renewDeadline)) (lt (float64 $le.renewDeadline) (float64 $le.leaseDuration))) -}}
{{- fail (printf "manager.leaderElection must be retryPeriod < renewDeadline < leaseDuration (%v, %v, %v)" $le.retryPeriod $le.renewDeadline $le.leaseDuration) -}}
{{- end -}}
{{- if and .Values.webhook.enabled (eq (int64 .Values.webhook.port) (int64 .Values.manager.metricsPort)) -}}
{{- fail (printf "webhook.port and manager.metricsPort must differ (both %v): both listen on the node" .Values.webhook.port) -}}
{{- end -}}
{{- if and .Values.webhook.certManager.enabled (not .Values.webhook.enabled) -}}
{{- fail "webhook.certManager.enabled needs webhook.enabled: cert-manager issues the webhook's certificate" -}}
{{- end -}}
{{- if .Values.init.enabled -}}
{{- include "hybridnet.validateInit" . -}}
{{- end -}}
{{- end }}

{{/* init: each CIDR of the family it is declared as, and the subnets the default family needs. */}}
{{- define "hybridnet.validateInit" -}}
{{- $init := .Values.init -}}
{{- $v4 := regexMatch "^[0-9.]+/[0-9]+$" $init.cidr -}}
{{- if and (eq $init.ipVersion "4") (not $v4) -}}
{{- fail (printf "init.cidr %q is not an IPv4 CIDR, as init.ipVersion \"4\" says" $init.cidr) -}}
{{- end -}}
{{- if and (eq $init.ipVersion "6") (not (regexMatch "^[0-9a-fA-F:]+/[0-9]+$" $init.cidr)) -}}
{{- fail (printf "init.cidr %q is not an IPv6 CIDR, as init.ipVersion \"6\" says" $init.cidr) -}}
{{- end -}}
{{- if $init.ipv6Cidr -}}
{{- if ne $init.ipVersion "4" -}}
{{- fail "init.ipv6Cidr is the second, IPv6 subnet of a dual-stack init network: init.ipVersion must be \"4\"" -}}
{{- end -}}
{{- if not (regexMatch "^[0-9a-fA-F:]+/[0-9]+$" $init.ipv6Cidr) -}}
{{- fail (printf "init.ipv6Cidr %q is not an IPv6 CIDR" $init.ipv6Cidr) -}}
{{- end -}}
{{- end -}}
{{- if eq .Values.config.defaultNetworkType "Overlay" -}}
{{- $hasV4 := eq $init.ipVersion "4" -}}
{{- $hasV6 := or (eq $init.ipVersion "6") (ne $init.ipv6Cidr "") -}}
{{- $family := .Values.config.defaultIPFamily -}}
{{- if or (and (ne $family "IPv6") (not $hasV4)) (and (ne $family "IPv4") (not $hasV6)) -}}
{{- fail (printf "config.defaultIPFamily %s needs init subnets of that family (init.ipVersion %q, init.ipv6Cidr %q): pods on the init network would get no address" $family $init.ipVersion $init.ipv6Cidr) -}}
{{- end -}}
{{- end -}}
{{- end }}
