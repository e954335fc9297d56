{{/*
Names. Objects are named <fullname>-<tier>; fullname is the release name, or
<release>-<chart> when the release name does not contain the chart name; 63 characters at most
minus room for the longest suffix ("-session-headless", 17 characters).
*/}}
{{- define "dmgrid.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "dmgrid.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "dmgrid.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "dmgrid.labels" -}}
helm.sh/chart: {{ include "dmgrid.chart" . }}
{{ include "dmgrid.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dmgrid
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "dmgrid.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dmgrid.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one tier's objects: dict "root" $ "tier" "gateway". */}}
{{- define "dmgrid.tierLabels" -}}
{{ include "dmgrid.labels" .root }}
app.kubernetes.io/component: {{ .tier }}
{{- end -}}

{{- define "dmgrid.tierSelectorLabels" -}}
{{ include "dmgrid.selectorLabels" .root }}
app.kubernetes.io/component: {{ .tier }}
{{- end -}}

{{- define "dmgrid.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dmgrid.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "dmgrid.secretName" -}}
{{- default (include "dmgrid.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "dmgrid.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The tiers that are deployed, in a fixed order. */}}
{{- define "dmgrid.tiers" -}}
{{- $tiers := list "gateway" "session" -}}
{{- if .Values.inventory.enabled }}{{ $tiers = append $tiers "inventory" }}{{ end -}}
{{- if .Values.notifier.enabled }}{{ $tiers = append $tiers "notifier" }}{{ end -}}
{{- join " " $tiers -}}
{{- end -}}

{{/* The session workers' headless Service name and the gateway's gRPC target. */}}
{{- define "dmgrid.sessionHeadless" -}}
{{- printf "%s-session-headless" (include "dmgrid.fullname" .) -}}
{{- end -}}

{{- define "dmgrid.sessionTarget" -}}
{{- printf "dns:///%s:%d" (include "dmgrid.sessionHeadless" .) (int .Values.session.port) -}}
{{- end -}}

{{/*
gRPC TLS (tls.grpc), per tier: dict "root" $ "tier" "session". Each returns "true" or "".
grpcTLSServer: the tier's gRPC server serves TLS. sessionTLSClient: the tier (gateway,
notifier) dials the session workers with TLS. grpcTLSMount: the tier mounts the Secret.
*/}}
{{- define "dmgrid.grpcTLSServer" -}}
{{- $g := .root.Values.tls.grpc -}}
{{- if and $g.enabled (has .tier (list "session" "inventory" "notifier")) -}}
{{- if index $g.servers .tier }}true{{ end -}}
{{- end -}}
{{- end -}}

{{- define "dmgrid.sessionTLSClient" -}}
{{- if and (has .tier (list "gateway" "notifier")) (include "dmgrid.grpcTLSServer" (dict "root" .root "tier" "session")) }}true{{ end -}}
{{- end -}}

{{- define "dmgrid.grpcTLSMount" -}}
{{- if or (include "dmgrid.grpcTLSServer" .) (include "dmgrid.sessionTLSClient" .) }}true{{ end -}}
{{- end -}}

{{/* Where the tls.grpc Secret is mounted. */}}
{{- define "dmgrid.grpcTLSDir" -}}/etc/dmgrid/grpc-tls{{- end -}}

{{/*
The inventory's single Redis: inventory.redisUrl, else redis.url.
*/}}
{{- define "dmgrid.inventoryRedisURL" -}}
{{- default .Values.redis.url .Values.inventory.redisUrl -}}
{{- end -}}

{{/*
Checks that JSON schema cannot express well; called from every Deployment so that a bad
combination fails `helm template`/`install` with a message naming the values.
*/}}
{{- define "dmgrid.validate" -}}
{{- $v := .Values -}}
{{- if and $v.redis.url $v.redis.clusterAddrs -}}
{{- fail "redis.url and redis.clusterAddrs are exclusive: set one (a single Redis) or the other (a Redis Cluster)" -}}
{{- end -}}
{{- if $v.secrets.existingSecret -}}
{{- if or $v.redis.url $v.nats.url $v.secrets.secretKey $v.inventory.redisUrl $v.secrets.smppPassword $v.secrets.kannelPassword -}}
{{- fail (printf "secrets.existingSecret (%s) is set: put redis-url, nats-url, inventory-redis-url, secret-key, smpp-password and kannel-password in that Secret and leave redis.url, nats.url, inventory.redisUrl and secrets.* empty" $v.secrets.existingSecret) -}}
{{- end -}}
{{- else -}}
{{- if not (or $v.redis.url $v.redis.clusterAddrs) -}}
{{- fail "set redis.url (a single Redis) or redis.clusterAddrs (a Redis Cluster), or secrets.existingSecret with a redis-url key" -}}
{{- end -}}
{{- if and $v.inventory.enabled (not (include "dmgrid.inventoryRedisURL" .)) -}}
{{- fail "the inventory needs a single Redis: set inventory.redisUrl (redis.clusterAddrs cannot serve it), or disable it with inventory.enabled=false" -}}
{{- end -}}
{{- if and $v.inventory.enabled (not $v.nats.url) -}}
{{- fail "the inventory is fed by NATS JetStream: set nats.url, or disable it with inventory.enabled=false" -}}
{{- end -}}
{{- end -}}
{{- range $tier := list "gateway" "session" -}}
{{- $a := (index $v $tier).autoscaling -}}
{{- if and $a.enabled (gt (int $a.minReplicas) (int $a.maxReplicas)) -}}
{{- fail (printf "%s.autoscaling.minReplicas (%d) is above maxReplicas (%d)" $tier (int $a.minReplicas) (int $a.maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- if $v.notifier.enabled -}}
{{- $n := $v.notifier -}}
{{- range $entry := splitList "," $n.routes -}}
{{- $p := trim (regexReplaceAll "^.*=" (trim $entry) "") -}}
{{- if and (eq $p "smpp") (not $n.smpp.addr) }}{{ fail "notifier.routes uses smpp: set notifier.smpp.addr" }}{{ end -}}
{{- if and (eq $p "kannel") (not $n.kannel.url) }}{{ fail "notifier.routes uses kannel: set notifier.kannel.url" }}{{ end -}}
{{- if and (eq $p "webhook") (not $n.webhookURL) }}{{ fail "notifier.routes uses webhook: set notifier.webhookURL" }}{{ end -}}
{{- end -}}
{{- end -}}
{{- if and $v.gateway.tls.enabled (not $v.gateway.tls.secretName) -}}
{{- fail "gateway.tls.enabled needs gateway.tls.secretName (a kubernetes.io/tls Secret)" -}}
{{- end -}}
{{- if $v.tls.grpc.enabled -}}
{{- if not $v.tls.grpc.secretName -}}
{{- fail "tls.grpc.enabled needs tls.grpc.secretName (a Secret with tls.crt, tls.key and ca.crt)" -}}
{{- end -}}
{{- $hp := int $v.tls.grpc.healthPort -}}
{{- range $tier := list "session" "inventory" "notifier" -}}
{{- if eq $hp (int (index $v $tier).port) -}}
{{- fail (printf "tls.grpc.healthPort (%d) is %s.port: the plaintext health port needs a port of its own" $hp $tier) -}}
{{- end -}}
{{- end -}}
{{- if eq $hp (int $v.metrics.port) -}}
{{- fail (printf "tls.grpc.healthPort (%d) is metrics.port" $hp) -}}
{{- end -}}
{{- end -}}
{{- if and $v.gateway.ingress.enabled (not $v.gateway.ingress.hosts) -}}
{{- fail "gateway.ingress.enabled needs at least one host in gateway.ingress.hosts" -}}
{{- end -}}
{{- end -}}

{{/*
The non-secret configuration of one tier (the ConfigMap's data); its checksum rolls the pods
when it changes. dict "root" $ "tier" "gateway".
*/}}
{{- define "dmgrid.configData" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $t := index $v .tier -}}
{{- $data := dict "DMGRID_METRICS_ADDR" (printf ":%d" (int $v.metrics.port)) -}}
{{- if eq .tier "gateway" -}}
{{- $_ := set $data "DMGRID_HTTP_ADDR" (printf ":%d" (int $t.port)) -}}
{{- $_ := set $data "DMGRID_DM_PATH" $t.dmPath -}}
{{- $_ := set $data "DMGRID_SESSION_ADDR" (include "dmgrid.sessionTarget" $root) -}}
{{- $_ := set $data "DMGRID_MAX_BODY_BYTES" (toString (int64 $t.maxBodyBytes)) -}}
{{- $_ := set $data "DMGRID_REQUEST_TIMEOUT" $t.requestTimeout -}}
{{- $_ := set $data "DMGRID_LAME_DUCK" $t.lameDuck -}}
{{- if $t.tls.enabled -}}
{{- $_ := set $data "DMGRID_TLS_CERT_FILE" "/etc/dmgrid/tls/tls.crt" -}}
{{- $_ := set $data "DMGRID_TLS_KEY_FILE" "/etc/dmgrid/tls/tls.key" -}}
{{- if $t.tls.clientCASecretName -}}
{{- $_ := set $data "DMGRID_TLS_CLIENT_CA_FILE" "/etc/dmgrid/client-ca/ca.crt" -}}
{{- end -}}
{{- end -}}
{{- else -}}
{{- $_ := set $data "DMGRID_GRPC_ADDR" (printf ":%d" (int $t.port)) -}}
{{- $_ := set $data "DMGRID_REDIS_PREFIX" $v.redis.prefix -}}
{{- $_ := set $data "DMGRID_EVENTS_STREAM" $v.nats.eventsStream -}}
{{- if and (ne .tier "inventory") $v.redis.clusterAddrs -}}
{{- $_ := set $data "DMGRID_REDIS_CLUSTER_ADDRS" (join "," $v.redis.clusterAddrs) -}}
{{- end -}}
{{- end -}}
{{- if $v.telemetry.otlpEndpoint -}}
{{- $_ := set $data "OTEL_EXPORTER_OTLP_ENDPOINT" $v.telemetry.otlpEndpoint -}}
{{- end -}}
{{- if eq .tier "notifier" -}}
{{- $_ := set $data "DMGRID_SESSION_ADDR" (include "dmgrid.sessionTarget" $root) -}}
{{- $_ := set $data "DMGRID_NOTIFIER_ROUTES" $t.routes -}}
{{- with $t.rateLimits }}{{ $_ := set $data "DMGRID_NOTIFIER_RATE_LIMITS" . }}{{ end -}}
{{- with $t.smpp.addr }}{{ $_ := set $data "DMGRID_SMPP_ADDR" . }}{{ end -}}
{{- with $t.smpp.systemID }}{{ $_ := set $data "DMGRID_SMPP_SYSTEM_ID" . }}{{ end -}}
{{- $_ := set $data "DMGRID_SMPP_SOURCE" $t.smpp.source -}}
{{- with $t.kannel.url }}{{ $_ := set $data "DMGRID_KANNEL_URL" . }}{{ end -}}
{{- with $t.kannel.user }}{{ $_ := set $data "DMGRID_KANNEL_USER" . }}{{ end -}}
{{- with $t.webhookURL }}{{ $_ := set $data "DMGRID_WEBHOOK_URL" . }}{{ end -}}
{{- $_ := set $data "DMGRID_PKG0_VERSION" (toString (int64 $t.pkg0Version)) -}}
{{- $_ := set $data "DMGRID_NOTIFIER_MAX_ATTEMPTS" (toString (int64 $t.maxAttempts)) -}}
{{- $_ := set $data "DMGRID_NOTIFIER_BACKOFF_MIN" $t.backoffMin -}}
{{- $_ := set $data "DMGRID_NOTIFIER_BACKOFF_MAX" $t.backoffMax -}}
{{- $_ := set $data "DMGRID_NOTIFIER_ANSWER_TIMEOUT" $t.answerTimeout -}}
{{- $_ := set $data "DMGRID_NOTIFIER_POLL" $t.pollInterval -}}
{{- $_ := set $data "DMGRID_NOTIFIER_LEASE" $t.lease -}}
{{- $_ := set $data "DMGRID_NOTIFIER_SEND_TIMEOUT" $t.sendTimeout -}}
{{- $_ := set $data "DMGRID_NOTIFIER_CONCURRENCY" (toString (int64 $t.concurrency)) -}}
{{- $_ := set $data "DMGRID_NOTIFIER_MAX_EVENT_AGE" $t.maxEventAge -}}
{{- $_ := set $data "DMGRID_NOTIFIER_DEADLETTER_SUBJECT" $t.deadLetterSubject -}}
{{- $_ := set $data "DMGRID_DEADLETTER_STREAM" $t.deadLetterStream -}}
{{- end -}}
{{- if eq .tier "session" -}}
{{- $_ := set $data "DMGRID_IDLE_TIMEOUT" $t.idleTimeout -}}
{{- $_ := set $data "DMGRID_MAX_ATTEMPTS" (toString (int64 $t.maxAttempts)) -}}
{{- $_ := set $data "DMGRID_CHALLENGE_LIMIT" (toString (int64 $t.challengeLimit)) -}}
{{- $_ := set $data "DMGRID_SERVER_MAX_MSG_SIZE" (toString (int64 $t.serverMaxMsgSize)) -}}
{{- $_ := set $data "DMGRID_SERVER_MAX_OBJ_SIZE" (toString (int64 $t.serverMaxObjSize)) -}}
{{- $_ := set $data "DMGRID_OUTBOX_SCAN" $t.outboxScan -}}
{{- $_ := set $data "DMGRID_OUTBOX_LINGER" (toString $t.outboxLinger) -}}
{{- $_ := set $data "DMGRID_DEVDETAIL_EVERY" (toString $t.devDetailEvery) -}}
{{- end -}}
{{- if eq .tier "inventory" -}}
{{- $_ := set $data "DMGRID_INVENTORY_CONSUMER" $t.consumer -}}
{{- $_ := set $data "DMGRID_INVENTORY_DEADLETTER_SUBJECT" $t.deadLetterSubject -}}
{{- $_ := set $data "DMGRID_DEADLETTER_STREAM" $t.deadLetterStream -}}
{{- $_ := set $data "DMGRID_INVENTORY_MAX_DELIVER" (toString (int64 $t.maxDeliver)) -}}
{{- $_ := set $data "DMGRID_INVENTORY_MAX_ACK_PENDING" (toString (int64 $t.maxAckPending)) -}}
{{- $_ := set $data "DMGRID_INVENTORY_ACK_WAIT" $t.ackWait -}}
{{- $_ := set $data "DMGRID_INVENTORY_WORKERS" (toString (int64 $t.workers)) -}}
{{- $_ := set $data "DMGRID_INVENTORY_BATCH" (toString (int64 $t.batch)) -}}
{{- $_ := set $data "DMGRID_INVENTORY_DEDUPE_WINDOW" $t.dedupeWindow -}}
{{- end -}}
{{- $g := $v.tls.grpc -}}
{{- $dir := include "dmgrid.grpcTLSDir" $root -}}
{{- if include "dmgrid.grpcTLSServer" . -}}
{{- $_ := set $data "DMGRID_GRPC_TLS_CERT" (printf "%s/tls.crt" $dir) -}}
{{- $_ := set $data "DMGRID_GRPC_TLS_KEY" (printf "%s/tls.key" $dir) -}}
{{- if $g.mutual }}{{ $_ := set $data "DMGRID_GRPC_TLS_CLIENT_CA" (printf "%s/ca.crt" $dir) }}{{ end -}}
{{- $_ := set $data "DMGRID_GRPC_HEALTH_ADDR" (printf ":%d" (int $g.healthPort)) -}}
{{- end -}}
{{- if include "dmgrid.sessionTLSClient" . -}}
{{- $_ := set $data "DMGRID_SESSION_TLS_CA" (printf "%s/ca.crt" $dir) -}}
{{- if $g.mutual -}}
{{- $_ := set $data "DMGRID_SESSION_TLS_CERT" (printf "%s/tls.crt" $dir) -}}
{{- $_ := set $data "DMGRID_SESSION_TLS_KEY" (printf "%s/tls.key" $dir) -}}
{{- end -}}
{{- with $g.serverName }}{{ $_ := set $data "DMGRID_SESSION_TLS_SERVER_NAME" . }}{{ end -}}
{{- end -}}
{{- range $k, $val := $t.env -}}
{{- $_ := set $data $k (toString $val) -}}
{{- end -}}
{{- toYaml $data -}}
{{- end -}}

{{/*
Secret-backed environment of one tier: [env name, Secret key, optional with existingSecret,
value in the chart-created Secret]. The chart-created Secret holds only the keys whose values
are set, so only those are referenced; an existingSecret is referenced for every key the tier
uses, optional where the service can run without it.
*/}}
{{- define "dmgrid.secretEnv" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $existing := $v.secrets.existingSecret -}}
{{- $refs := list -}}
{{- if eq .tier "session" -}}
{{- if not $v.redis.clusterAddrs -}}{{- $refs = append $refs (list "DMGRID_REDIS_URL" "redis-url" false $v.redis.url) -}}{{- end -}}
{{- $refs = append $refs (list "DMGRID_NATS_URL" "nats-url" true $v.nats.url) -}}
{{- $refs = append $refs (list "DMGRID_SECRET_KEY" "secret-key" true $v.secrets.secretKey) -}}
{{- else if eq .tier "notifier" -}}
{{- if not $v.redis.clusterAddrs -}}{{- $refs = append $refs (list "DMGRID_REDIS_URL" "redis-url" true $v.redis.url) -}}{{- end -}}
{{- $refs = append $refs (list "DMGRID_NATS_URL" "nats-url" true $v.nats.url) -}}
{{- $refs = append $refs (list "DMGRID_SMPP_PASSWORD" "smpp-password" true $v.secrets.smppPassword) -}}
{{- $refs = append $refs (list "DMGRID_KANNEL_PASS" "kannel-password" true $v.secrets.kannelPassword) -}}
{{- else if eq .tier "inventory" -}}
{{- $refs = append $refs (list "DMGRID_REDIS_URL" "inventory-redis-url" false (include "dmgrid.inventoryRedisURL" $root)) -}}
{{- $refs = append $refs (list "DMGRID_NATS_URL" "nats-url" false $v.nats.url) -}}
{{- end -}}
{{- $env := list -}}
{{- range $r := $refs -}}
{{- if or $existing (index $r 3) -}}
{{- $ref := dict "name" (include "dmgrid.secretName" $root) "key" (index $r 1) -}}
{{- if and $existing (index $r 2) }}{{ $_ := set $ref "optional" true }}{{ end -}}
{{- $env = append $env (dict "name" (index $r 0) "valueFrom" (dict "secretKeyRef" $ref)) -}}
{{- end -}}
{{- end -}}
{{- if $env }}{{ toYaml $env }}{{ end -}}
{{- end -}}

{{/* The chart-created Secret's data (keys with a value only). */}}
{{- define "dmgrid.secretData" -}}
{{- $v := .Values -}}
{{- $data := dict -}}
{{- if $v.secrets.secretKey }}{{ $_ := set $data "secret-key" $v.secrets.secretKey }}{{ end -}}
{{- if $v.redis.url }}{{ $_ := set $data "redis-url" $v.redis.url }}{{ end -}}
{{- if $v.nats.url }}{{ $_ := set $data "nats-url" $v.nats.url }}{{ end -}}
{{- if $v.secrets.smppPassword }}{{ $_ := set $data "smpp-password" $v.secrets.smppPassword }}{{ end -}}
{{- if $v.secrets.kannelPassword }}{{ $_ := set $data "kannel-password" $v.secrets.kannelPassword }}{{ end -}}
{{- if and $v.inventory.enabled (include "dmgrid.inventoryRedisURL" .) }}{{ $_ := set $data "inventory-redis-url" (include "dmgrid.inventoryRedisURL" .) }}{{ end -}}
{{- range $k, $val := $data }}{{ $_ := set $data $k ($val | b64enc) }}{{ end -}}
{{- if $data }}{{ toYaml $data }}{{ end -}}
{{- end -}}

{{/* Probe timing fields: a dict of initialDelaySeconds, periodSeconds, ... */}}
{{- define "dmgrid.probeTiming" -}}
initialDelaySeconds: {{ int .initialDelaySeconds }}
periodSeconds: {{ int .periodSeconds }}
timeoutSeconds: {{ int .timeoutSeconds }}
failureThreshold: {{ int .failureThreshold }}
successThreshold: 1
{{- end -}}
