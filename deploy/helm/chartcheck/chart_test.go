package chartcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

var allTiers = []string{"gateway", "session", "inventory", "notifier"}

// renderCase is one `helm template` run and what it must produce.
type renderCase struct {
	name, release, namespace string
	args                     []string // -f / --set
	tiers                    []string // Deployments, by app.kubernetes.io/component
	hpa                      []string // tiers with an HPA
	pdbs                     int
	networkPolicies          bool
	ingress                  bool
	serviceMonitor           bool
	chartSecret              bool // the chart creates the Secret (no existingSecret)
}

func renderCases(t *testing.T) []renderCase {
	prod, err := filepath.Abs(filepath.Join("..", "dmgrid", "examples", "production-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return []renderCase{
		{name: "defaults", release: "dmgrid", namespace: "default", tiers: allTiers,
			hpa: []string{"gateway", "session"}, pdbs: 4, networkPolicies: true, chartSecret: true},
		{name: "defaults-other-release-name", release: "edge", namespace: "edge-system", tiers: allTiers,
			hpa: []string{"gateway", "session"}, pdbs: 4, networkPolicies: true, chartSecret: true},
		{name: "defaults-minimum-kubernetes", release: "dmgrid", namespace: "default", tiers: allTiers,
			args: []string{"--kube-version", "1.27.0"},
			hpa:  []string{"gateway", "session"}, pdbs: 4, networkPolicies: true, chartSecret: true},
		{name: "production-example", release: "dmgrid", namespace: "dmgrid", args: []string{"-f", prod},
			tiers: allTiers, hpa: []string{"gateway", "session"}, pdbs: 4, networkPolicies: true,
			ingress: true, serviceMonitor: true},
		{name: "minimal", release: "dm", namespace: "devices", args: []string{"-f", filepath.Join("testdata", "minimal-values.yaml")},
			tiers: []string{"gateway", "session"}, chartSecret: true},
		{name: "grpc-mutual-tls", release: "dmgrid", namespace: "default", tiers: allTiers,
			args: []string{"--set", "tls.grpc.enabled=true,tls.grpc.secretName=dmgrid-grpc-tls,tls.grpc.mutual=true,tls.grpc.serverName=session.dmgrid.internal"},
			hpa:  []string{"gateway", "session"}, pdbs: 4, networkPolicies: true, chartSecret: true},
		{name: "grpc-tls-inventory-only", release: "dmgrid", namespace: "default", tiers: allTiers,
			args: []string{"--set", "tls.grpc.enabled=true,tls.grpc.secretName=grpc,tls.grpc.servers.session=false,tls.grpc.servers.notifier=false,tls.grpc.healthPort=9300"},
			hpa:  []string{"gateway", "session"}, pdbs: 4, networkPolicies: true, chartSecret: true},
		{name: "api-clients-and-any-metrics-namespace", release: "dmgrid", namespace: "default",
			tiers: []string{"gateway", "session", "inventory"},
			args: []string{"--set", "networkPolicy.metrics.namespace=", "--set", "notifier.enabled=false",
				"--set-json", `networkPolicy.apiClients=[{"namespaceSelector":{"matchLabels":{"team":"fota"}},"podSelector":{"matchExpressions":[{"key":"app","operator":"In","values":["fota"]}]}},{"ipBlock":{"cidr":"10.20.0.0/16"}}]`},
			hpa: []string{"gateway", "session"}, pdbs: 3, networkPolicies: true, chartSecret: true},
	}
}

func TestRender(t *testing.T) {
	for _, c := range renderCases(t) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out, err := render(t, c.release, c.namespace, c.args...)
			if err != nil {
				t.Fatal(err)
			}
			m, err := decode(out)
			if err != nil {
				t.Fatal(err)
			}
			ch := &checker{t: t, c: c, m: m, fullname: fullname(c.release)}
			ch.meta()
			ch.deployments()
			ch.services()
			ch.hpas()
			ch.pdbs()
			ch.ingress()
			ch.networkPolicies()
			ch.serviceMonitors()
			ch.secret()
		})
	}
}

// TestSchemaRejects renders each testdata/invalid/*.yaml, whose first line is
// "# want: <text>": helm template must fail with that text in its error (schema violations
// and the chart's own checks alike).
func TestSchemaRejects(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "invalid", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/invalid/*.yaml: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(b), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok || want == "" {
				t.Fatalf("%s: first line must be \"# want: <error text>\"", f)
			}
			_, err = render(t, "dmgrid", "default", "-f", f)
			if err == nil {
				t.Fatalf("helm template accepted %s; want an error containing %q", f, want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error does not contain %q:\n%v", want, err)
			}
		})
	}
	t.Run("kubernetes-too-old", func(t *testing.T) {
		t.Parallel()
		_, err := render(t, "dmgrid", "default", "--kube-version", "1.26.9")
		if err == nil || !strings.Contains(err.Error(), "kubeVersion") {
			t.Fatalf("want a kubeVersion error for Kubernetes 1.26 (no gRPC probes), got %v", err)
		}
	})
}

func fullname(release string) string {
	if strings.Contains(release, "dmgrid") {
		return release
	}
	return release + "-dmgrid"
}

type checker struct {
	t        *testing.T
	c        renderCase
	m        *Manifests
	fullname string
}

func (ch *checker) errorf(format string, args ...any) {
	ch.t.Helper()
	ch.t.Errorf("%s: "+format, append([]any{ch.c.name}, args...)...)
}

// meta: names, namespaces and labels of every object.
func (ch *checker) meta() {
	ch.t.Helper()
	for _, obj := range ch.m.All {
		meta := objectMeta(obj)
		what := fmt.Sprintf("%T %s", obj, meta.Name)
		for _, msg := range validation.IsDNS1123Subdomain(meta.Name) {
			ch.errorf("%s: name: %s", what, msg)
		}
		if _, ok := obj.(*corev1.Service); ok {
			for _, msg := range validation.IsDNS1035Label(meta.Name) {
				ch.errorf("%s: Service name: %s", what, msg)
			}
		}
		if meta.Namespace != ch.c.namespace {
			ch.errorf("%s: namespace %q, want the release namespace %q", what, meta.Namespace, ch.c.namespace)
		}
		checkLabels(ch, what, meta.Labels)
		for k, want := range map[string]string{
			"app.kubernetes.io/name":       "dmgrid",
			"app.kubernetes.io/instance":   ch.c.release,
			"app.kubernetes.io/managed-by": "Helm",
		} {
			if meta.Labels[k] != want {
				ch.errorf("%s: label %s=%q, want %q", what, k, meta.Labels[k], want)
			}
		}
	}
}

func checkLabels(ch *checker, what string, l map[string]string) {
	ch.t.Helper()
	for k, v := range l {
		for _, msg := range validation.IsQualifiedName(k) {
			ch.errorf("%s: label key %q: %s", what, k, msg)
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			ch.errorf("%s: label %s value %q: %s", what, k, v, msg)
		}
	}
}

func (ch *checker) deployment(tier string) *appsv1.Deployment {
	for _, d := range ch.m.Deployments {
		if d.Labels["app.kubernetes.io/component"] == tier {
			return d
		}
	}
	return nil
}

// selected returns the Deployments whose pod template labels the selector matches.
func (ch *checker) selected(sel labels.Selector) []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, d := range ch.m.Deployments {
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, d)
		}
	}
	return out
}

func (ch *checker) labelSelector(what string, s *metav1.LabelSelector) labels.Selector {
	ch.t.Helper()
	if s == nil {
		ch.errorf("%s: no selector", what)
		return labels.Nothing()
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		ch.errorf("%s: selector: %v", what, err)
		return labels.Nothing()
	}
	return sel
}

func (ch *checker) hasHPA(tier string) bool { return slices.Contains(ch.c.hpa, tier) }

// deployments: one per tier, each with the pod and container invariants.
func (ch *checker) deployments() {
	ch.t.Helper()
	var got []string
	for _, d := range ch.m.Deployments {
		got = append(got, d.Labels["app.kubernetes.io/component"])
	}
	if !sameSet(got, ch.c.tiers) {
		ch.errorf("Deployments for tiers %v, want %v", got, ch.c.tiers)
	}
	for _, d := range ch.m.Deployments {
		tier := d.Labels["app.kubernetes.io/component"]
		what := "Deployment " + d.Name
		if d.Name != ch.fullname+"-"+tier {
			ch.errorf("%s: want name %s-%s", what, ch.fullname, tier)
		}
		sel := ch.labelSelector(what, d.Spec.Selector)
		if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			ch.errorf("%s: selector %s does not match its pod labels %v", what, sel, d.Spec.Template.Labels)
		}
		if n := len(ch.selected(sel)); n != 1 {
			ch.errorf("%s: selector %s matches %d Deployments' pods, want 1", what, sel, n)
		}
		checkLabels(ch, what+" pod", d.Spec.Template.Labels)
		if ch.hasHPA(tier) && d.Spec.Replicas != nil {
			ch.errorf("%s: sets replicas although an HPA scales it", what)
		}
		if !ch.hasHPA(tier) && d.Spec.Replicas == nil {
			ch.errorf("%s: no replicas and no HPA", what)
		}
		if d.Spec.Template.Annotations["checksum/config"] == "" {
			ch.errorf("%s: no checksum/config annotation (config changes would not roll the pods)", what)
		}
		ch.podSpec(what, tier, &d.Spec.Template.Spec)
	}
}

func (ch *checker) podSpec(what, tier string, p *corev1.PodSpec) {
	ch.t.Helper()
	if p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken {
		ch.errorf("%s: automountServiceAccountToken must be false", what)
	}
	if sa := p.ServiceAccountName; sa != "default" && ch.m.ServiceAccounts[sa] == nil {
		ch.errorf("%s: ServiceAccount %q is not rendered", what, sa)
	}
	psc := p.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		ch.errorf("%s: pod securityContext.runAsNonRoot must be true", what)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		ch.errorf("%s: pod seccompProfile must be RuntimeDefault", what)
	}
	if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		ch.errorf("%s: runAsUser 0", what)
	}
	if p.HostNetwork || p.HostPID || p.HostIPC {
		ch.errorf("%s: host namespaces", what)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range p.Volumes {
		volumes[v.Name] = v
		if v.HostPath != nil {
			ch.errorf("%s: hostPath volume %s", what, v.Name)
		}
	}
	if len(p.Containers) != 1 {
		ch.errorf("%s: %d containers, want 1", what, len(p.Containers))
	}
	for _, c := range p.InitContainers {
		ch.container(what+" init container "+c.Name, tier, c, volumes, false)
	}
	for _, c := range p.Containers {
		ch.container(what+" container "+c.Name, tier, c, volumes, true)
	}
}

func (ch *checker) container(what, tier string, c corev1.Container, volumes map[string]corev1.Volume, main bool) {
	ch.t.Helper()
	if c.Image == "" {
		ch.errorf("%s: no image", what)
	}
	if main {
		if want := []string{"/usr/local/bin/dmgrid-" + tier}; !slices.Equal(c.Command, want) {
			ch.errorf("%s: command %v, want %v", what, c.Command, want)
		}
	}
	// Resources.
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		ch.errorf("%s: resources.requests.cpu and .memory are required", what)
	}
	if c.Resources.Limits.Memory().IsZero() {
		ch.errorf("%s: resources.limits.memory is required", what)
	}
	if lim, req := c.Resources.Limits.Memory(), c.Resources.Requests.Memory(); !lim.IsZero() && lim.Cmp(*req) < 0 {
		ch.errorf("%s: memory limit %s below request %s", what, lim, req)
	}
	// Security context.
	sc := c.SecurityContext
	switch {
	case sc == nil:
		ch.errorf("%s: no securityContext", what)
	default:
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			ch.errorf("%s: runAsNonRoot must be true", what)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			ch.errorf("%s: readOnlyRootFilesystem must be true", what)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			ch.errorf("%s: allowPrivilegeEscalation must be false", what)
		}
		if sc.Privileged != nil && *sc.Privileged {
			ch.errorf("%s: privileged", what)
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			ch.errorf("%s: capabilities must drop ALL and add none, got %+v", what, sc.Capabilities)
		}
		if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			ch.errorf("%s: seccompProfile must be RuntimeDefault", what)
		}
	}
	// Ports.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		for _, msg := range validation.IsValidPortName(p.Name) {
			ch.errorf("%s: port name %q: %s", what, p.Name, msg)
		}
		if _, dup := ports[p.Name]; dup {
			ch.errorf("%s: duplicate port name %s", what, p.Name)
		}
		ports[p.Name] = p.ContainerPort
	}
	// Probes, wired to the real health endpoints.
	if c.LivenessProbe == nil || c.ReadinessProbe == nil {
		ch.errorf("%s: liveness and readiness probes are required", what)
		return
	}
	if !main {
		return
	}
	if tier == "gateway" {
		for _, pr := range []struct {
			kind, path string
			p          *corev1.Probe
		}{{"liveness", "/healthz", c.LivenessProbe}, {"readiness", "/readyz", c.ReadinessProbe}} {
			h := pr.p.HTTPGet
			if h == nil || h.Path != pr.path || h.Port != intstr.FromString("http") || ports["http"] == 0 {
				ch.errorf("%s: %s probe must be httpGet %s on the http port, got %+v", what, pr.kind, pr.path, h)
			}
		}
	} else {
		// Kubernetes' gRPC probes do not speak TLS: with a TLS API port they must use the
		// plaintext health port.
		probePort := "grpc"
		if ch.envFromConfigMap(c)["DMGRID_GRPC_TLS_CERT"] != "" {
			probePort = "health"
		} else if ports["health"] != 0 {
			ch.errorf("%s: a health port without TLS on the grpc port", what)
		}
		for kind, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
			if p.GRPC == nil || ports[probePort] == 0 || p.GRPC.Port != ports[probePort] {
				ch.errorf("%s: %s probe must be grpc on the %s port %d, got %+v", what, kind, probePort, ports[probePort], p.GRPC)
			}
		}
	}
	if ports["metrics"] == 0 {
		ch.errorf("%s: no metrics port", what)
	}
	// Configuration: the ConfigMap exists and agrees with the ports.
	var cm *corev1.ConfigMap
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm = ch.m.ConfigMaps[ef.ConfigMapRef.Name]
			if cm == nil {
				ch.errorf("%s: envFrom ConfigMap %s is not rendered", what, ef.ConfigMapRef.Name)
			}
		case ef.SecretRef != nil:
			ch.errorf("%s: envFrom a whole Secret (%s); reference the keys the tier needs", what, ef.SecretRef.Name)
		}
	}
	if cm == nil {
		ch.errorf("%s: no ConfigMap", what)
		return
	}
	for k := range cm.Data {
		for _, msg := range validation.IsEnvVarName(k) {
			ch.errorf("%s: ConfigMap key %q: %s", what, k, msg)
		}
	}
	if got, want := cm.Data["DMGRID_METRICS_ADDR"], fmt.Sprintf(":%d", ports["metrics"]); got != want {
		ch.errorf("%s: DMGRID_METRICS_ADDR %q, want %q (the metrics port)", what, got, want)
	}
	if tier == "gateway" || tier == "notifier" {
		ch.sessionAddr(what, cm.Data["DMGRID_SESSION_ADDR"])
	}
	ch.grpcTLS(what, tier, c, cm, ports, volumes)
	if tier == "gateway" {
		if got, want := cm.Data["DMGRID_HTTP_ADDR"], fmt.Sprintf(":%d", ports["http"]); got != want {
			ch.errorf("%s: DMGRID_HTTP_ADDR %q, want %q", what, got, want)
		}
	} else if got, want := cm.Data["DMGRID_GRPC_ADDR"], fmt.Sprintf(":%d", ports["grpc"]); got != want {
		ch.errorf("%s: DMGRID_GRPC_ADDR %q, want %q", what, got, want)
	}
	// Environment: unique valid names, not shadowing the ConfigMap, Secret references that resolve.
	names := map[string]bool{}
	for _, e := range c.Env {
		for _, msg := range validation.IsEnvVarName(e.Name) {
			ch.errorf("%s: env %q: %s", what, e.Name, msg)
		}
		if names[e.Name] {
			ch.errorf("%s: env %s set twice", what, e.Name)
		}
		names[e.Name] = true
		if _, ok := cm.Data[e.Name]; ok {
			ch.errorf("%s: env %s shadows the ConfigMap's value", what, e.Name)
		}
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			continue
		}
		ref := e.ValueFrom.SecretKeyRef
		if s := ch.m.Secrets[ref.Name]; s != nil {
			if _, ok := s.Data[ref.Key]; !ok && (ref.Optional == nil || !*ref.Optional) {
				ch.errorf("%s: env %s: Secret %s has no key %s", what, e.Name, ref.Name, ref.Key)
			}
		} else if ref.Name == ch.fullname {
			ch.errorf("%s: env %s: references the chart's Secret %s, which is not rendered", what, e.Name, ref.Name)
		}
	}
	if tier != "gateway" {
		if !names["DMGRID_REDIS_URL"] && cm.Data["DMGRID_REDIS_CLUSTER_ADDRS"] == "" {
			ch.errorf("%s: neither DMGRID_REDIS_URL nor DMGRID_REDIS_CLUSTER_ADDRS", what)
		}
	} else {
		for n := range names {
			if strings.Contains(n, "REDIS") || strings.Contains(n, "NATS") || n == "DMGRID_SECRET_KEY" {
				ch.errorf("%s: the gateway gets %s, which it does not need", what, n)
			}
		}
	}
	for _, vm := range c.VolumeMounts {
		if _, ok := volumes[vm.Name]; !ok {
			ch.errorf("%s: volumeMount %s has no volume", what, vm.Name)
		}
	}
}

// envFromConfigMap returns the data of the ConfigMap c reads with envFrom (nil if none).
func (ch *checker) envFromConfigMap(c corev1.Container) map[string]string {
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil && ch.m.ConfigMaps[ef.ConfigMapRef.Name] != nil {
			return ch.m.ConfigMaps[ef.ConfigMapRef.Name].Data
		}
	}
	return nil
}

// grpcTLS: a tier's TLS files are in a read-only mount of a Secret volume that has the
// keys; a TLS server has the plaintext health port named in DMGRID_GRPC_HEALTH_ADDR and no
// h2c (plaintext) appProtocol on its Services; the gateway and the notifier dial the session
// workers with TLS exactly when the workers serve it, and present a certificate exactly when
// the workers require one.
func (ch *checker) grpcTLS(what, tier string, c corev1.Container, cm *corev1.ConfigMap, ports map[string]int32, volumes map[string]corev1.Volume) {
	ch.t.Helper()
	d := cm.Data
	for _, k := range []string{"DMGRID_GRPC_TLS_CERT", "DMGRID_GRPC_TLS_KEY", "DMGRID_GRPC_TLS_CLIENT_CA",
		"DMGRID_SESSION_TLS_CA", "DMGRID_SESSION_TLS_CERT", "DMGRID_SESSION_TLS_KEY"} {
		if d[k] == "" {
			continue
		}
		dir, file := filepath.Split(d[k])
		mounted := false
		for _, vm := range c.VolumeMounts {
			if filepath.Clean(dir) != filepath.Clean(vm.MountPath) {
				continue
			}
			mounted = true
			v, ok := volumes[vm.Name]
			if !ok || v.Secret == nil || v.Secret.SecretName == "" {
				ch.errorf("%s: %s is in mount %s, which is not a Secret volume", what, k, vm.Name)
				continue
			}
			if !vm.ReadOnly {
				ch.errorf("%s: the TLS mount %s is not read-only", what, vm.Name)
			}
			hasKey := len(v.Secret.Items) == 0
			for _, it := range v.Secret.Items {
				hasKey = hasKey || it.Path == file
			}
			if !hasKey {
				ch.errorf("%s: %s: Secret volume %s has no item %s", what, k, vm.Name, file)
			}
		}
		if !mounted {
			ch.errorf("%s: %s=%s is not in a mounted volume", what, k, d[k])
		}
	}
	tlsServer := d["DMGRID_GRPC_TLS_CERT"] != ""
	if tlsServer != (d["DMGRID_GRPC_TLS_KEY"] != "") || (d["DMGRID_GRPC_TLS_CLIENT_CA"] != "" && !tlsServer) {
		ch.errorf("%s: DMGRID_GRPC_TLS_CERT, _KEY and _CLIENT_CA do not go together: %v", what, d)
	}
	if tlsServer {
		if want := fmt.Sprintf(":%d", ports["health"]); ports["health"] == 0 || d["DMGRID_GRPC_HEALTH_ADDR"] != want {
			ch.errorf("%s: TLS server: DMGRID_GRPC_HEALTH_ADDR %q, want %q (the health port)", what, d["DMGRID_GRPC_HEALTH_ADDR"], want)
		}
	}
	for _, s := range ch.m.Services {
		if s.Spec.Selector["app.kubernetes.io/component"] != tier {
			continue
		}
		for _, p := range s.Spec.Ports {
			if p.Name != "grpc" {
				continue
			}
			if h2c := p.AppProtocol != nil && *p.AppProtocol == "kubernetes.io/h2c"; h2c == tlsServer {
				ch.errorf("Service %s: appProtocol %v with TLS %v (h2c is plaintext HTTP/2)", s.Name, p.AppProtocol, tlsServer)
			}
		}
	}
	if tier != "gateway" && tier != "notifier" {
		return
	}
	sess := ch.deployment("session")
	if sess == nil || len(sess.Spec.Template.Spec.Containers) == 0 {
		return
	}
	sd := ch.envFromConfigMap(sess.Spec.Template.Spec.Containers[0])
	if (d["DMGRID_SESSION_TLS_CA"] != "") != (sd["DMGRID_GRPC_TLS_CERT"] != "") {
		ch.errorf("%s: DMGRID_SESSION_TLS_CA %q, but the session workers' DMGRID_GRPC_TLS_CERT is %q", what, d["DMGRID_SESSION_TLS_CA"], sd["DMGRID_GRPC_TLS_CERT"])
	}
	if (d["DMGRID_SESSION_TLS_CERT"] != "") != (sd["DMGRID_GRPC_TLS_CLIENT_CA"] != "") || (d["DMGRID_SESSION_TLS_CERT"] != "") != (d["DMGRID_SESSION_TLS_KEY"] != "") {
		ch.errorf("%s: client certificate %q/%q, but the session workers' DMGRID_GRPC_TLS_CLIENT_CA is %q",
			what, d["DMGRID_SESSION_TLS_CERT"], d["DMGRID_SESSION_TLS_KEY"], sd["DMGRID_GRPC_TLS_CLIENT_CA"])
	}
}

// sessionAddr: gateways and notifiers dial the session workers through the headless
// Service, so that gRPC balances across every worker.
func (ch *checker) sessionAddr(what, addr string) {
	ch.t.Helper()
	headless := ch.service(ch.fullname + "-session-headless")
	if headless == nil || len(headless.Spec.Ports) == 0 {
		ch.errorf("no Service %s-session-headless with a port", ch.fullname)
		return
	}
	if want := fmt.Sprintf("dns:///%s:%d", headless.Name, headless.Spec.Ports[0].Port); addr != want {
		ch.errorf("%s: DMGRID_SESSION_ADDR %q, want %q", what, addr, want)
	}
}

func (ch *checker) service(name string) *corev1.Service {
	for _, s := range ch.m.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// containerPort resolves a Service/NetworkPolicy port reference against a Deployment.
func containerPort(d *appsv1.Deployment, p intstr.IntOrString) bool {
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, cp := range c.Ports {
			if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
				return true
			}
		}
	}
	return false
}

// services: each selects exactly one tier and targets ports it has; the session workers have
// a headless Service (for the gateways) and a ClusterIP one (for API clients).
func (ch *checker) services() {
	ch.t.Helper()
	for _, s := range ch.m.Services {
		what := "Service " + s.Name
		if len(s.Spec.Selector) == 0 {
			ch.errorf("%s: no selector", what)
			continue
		}
		ds := ch.selected(labels.SelectorFromSet(s.Spec.Selector))
		if len(ds) != 1 {
			ch.errorf("%s: selects %d Deployments, want 1", what, len(ds))
			continue
		}
		for _, p := range s.Spec.Ports {
			if !containerPort(ds[0], p.TargetPort) {
				ch.errorf("%s: targetPort %s is not a port of %s", what, p.TargetPort.String(), ds[0].Name)
			}
		}
	}
	h := ch.service(ch.fullname + "-session-headless")
	switch {
	case h == nil:
		ch.errorf("no headless Service %s-session-headless", ch.fullname)
	case h.Spec.ClusterIP != corev1.ClusterIPNone:
		ch.errorf("Service %s: clusterIP %q, want None (headless)", h.Name, h.Spec.ClusterIP)
	case h.Spec.Selector["app.kubernetes.io/component"] != "session":
		ch.errorf("Service %s does not select the session workers", h.Name)
	}
	for _, tier := range ch.c.tiers {
		s := ch.service(ch.fullname + "-" + tier)
		if s == nil {
			ch.errorf("no Service %s-%s", ch.fullname, tier)
			continue
		}
		if s.Spec.ClusterIP == corev1.ClusterIPNone {
			ch.errorf("Service %s is headless; API clients need a ClusterIP", s.Name)
		}
	}
}

func (ch *checker) hpas() {
	ch.t.Helper()
	var got []string
	for _, h := range ch.m.HPAs {
		what := "HorizontalPodAutoscaler " + h.Name
		ref := h.Spec.ScaleTargetRef
		var target *appsv1.Deployment
		for _, d := range ch.m.Deployments {
			if d.Name == ref.Name {
				target = d
			}
		}
		if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || target == nil {
			ch.errorf("%s: scaleTargetRef %+v is not a rendered Deployment", what, ref)
			continue
		}
		got = append(got, target.Labels["app.kubernetes.io/component"])
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			ch.errorf("%s: minReplicas %v maxReplicas %d", what, h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		cpu := false
		for _, mt := range h.Spec.Metrics {
			if mt.Resource != nil && mt.Resource.Name == corev1.ResourceCPU {
				cpu = true
			}
		}
		if !cpu {
			ch.errorf("%s: no CPU metric", what)
		}
		for _, c := range target.Spec.Template.Spec.Containers {
			if c.Resources.Requests.Cpu().IsZero() {
				ch.errorf("%s: container %s has no CPU request to compute utilization from", what, c.Name)
			}
		}
	}
	if !sameSet(got, ch.c.hpa) {
		ch.errorf("HPAs for %v, want %v", got, ch.c.hpa)
	}
}

func (ch *checker) pdbs() {
	ch.t.Helper()
	if len(ch.m.PDBs) != ch.c.pdbs {
		ch.errorf("%d PodDisruptionBudgets, want %d", len(ch.m.PDBs), ch.c.pdbs)
	}
	for _, p := range ch.m.PDBs {
		what := "PodDisruptionBudget " + p.Name
		if n := len(ch.selected(ch.labelSelector(what, p.Spec.Selector))); n != 1 {
			ch.errorf("%s: selects %d Deployments, want 1", what, n)
		}
		if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
			ch.errorf("%s: set exactly one of minAvailable and maxUnavailable", what)
		}
	}
}

func (ch *checker) ingress() {
	ch.t.Helper()
	if want := map[bool]int{true: 1, false: 0}[ch.c.ingress]; len(ch.m.Ingresses) != want {
		ch.errorf("%d Ingresses, want %d", len(ch.m.Ingresses), want)
	}
	for _, in := range ch.m.Ingresses {
		what := "Ingress " + in.Name
		hosts := map[string]bool{}
		dmPath := ch.m.ConfigMaps[ch.fullname+"-gateway"].Data["DMGRID_DM_PATH"]
		for _, r := range in.Spec.Rules {
			hosts[r.Host] = true
			if r.HTTP == nil || len(r.HTTP.Paths) == 0 {
				ch.errorf("%s: rule %s has no paths", what, r.Host)
				continue
			}
			for _, p := range r.HTTP.Paths {
				b := p.Backend.Service
				s := (*corev1.Service)(nil)
				if b != nil {
					s = ch.service(b.Name)
				}
				if s == nil || s.Labels["app.kubernetes.io/component"] != "gateway" {
					ch.errorf("%s: backend %+v is not the gateway Service", what, b)
					continue
				}
				found := false
				for _, sp := range s.Spec.Ports {
					found = found || (b.Port.Name != "" && sp.Name == b.Port.Name) || (b.Port.Number != 0 && sp.Port == b.Port.Number)
				}
				if !found {
					ch.errorf("%s: backend port %+v is not a port of Service %s", what, b.Port, s.Name)
				}
				if p.Path != dmPath {
					ch.errorf("%s: path %q, want the DM path %q", what, p.Path, dmPath)
				}
			}
		}
		if len(in.Spec.TLS) == 0 {
			ch.errorf("%s: no TLS", what)
		}
		for _, tls := range in.Spec.TLS {
			if tls.SecretName == "" {
				ch.errorf("%s: TLS entry without secretName", what)
			}
			for _, h := range tls.Hosts {
				if !hosts[h] {
					ch.errorf("%s: TLS host %s has no rule", what, h)
				}
			}
		}
	}
}

func (ch *checker) networkPolicies() {
	ch.t.Helper()
	if !ch.c.networkPolicies {
		if len(ch.m.NetworkPolicies) != 0 {
			ch.errorf("%d NetworkPolicies, want none", len(ch.m.NetworkPolicies))
		}
		return
	}
	covered := map[string]bool{}
	for _, np := range ch.m.NetworkPolicies {
		what := "NetworkPolicy " + np.Name
		ds := ch.selected(ch.labelSelector(what, &np.Spec.PodSelector))
		if len(ds) != 1 {
			ch.errorf("%s: selects %d Deployments, want 1", what, len(ds))
			continue
		}
		d := ds[0]
		tier := d.Labels["app.kubernetes.io/component"]
		covered[tier] = true
		openTo := map[string][]string{} // port name -> peers ("*" = anyone)
		for _, rule := range np.Spec.Ingress {
			if len(rule.Ports) == 0 {
				ch.errorf("%s: a rule admits every port", what)
			}
			var peers []string
			if len(rule.From) == 0 {
				peers = []string{"*"}
			}
			for _, f := range rule.From {
				switch {
				case f.PodSelector != nil && f.NamespaceSelector == nil:
					for _, sd := range ch.selected(ch.labelSelector(what+" from", f.PodSelector)) {
						peers = append(peers, sd.Labels["app.kubernetes.io/component"])
					}
				default:
					peers = append(peers, "external")
				}
			}
			for _, p := range rule.Ports {
				if p.Port == nil || !containerPort(d, *p.Port) {
					ch.errorf("%s: port %v is not a container port of %s", what, p.Port, d.Name)
					continue
				}
				name := portName(d, *p.Port)
				openTo[name] = append(openTo[name], peers...)
			}
		}
		if len(openTo["metrics"]) == 0 || slices.Contains(openTo["metrics"], "*") {
			ch.errorf("%s: the metrics port must be open to the monitoring namespace only, got %v", what, openTo["metrics"])
		}
		switch tier {
		case "gateway":
			if !slices.Contains(openTo["http"], "*") {
				ch.errorf("%s: the gateway's HTTP port must be open to everyone, got %v", what, openTo["http"])
			}
		case "session":
			got := openTo["grpc"]
			if slices.Contains(got, "*") {
				ch.errorf("%s: the session gRPC port is open to everyone", what)
			}
			for _, want := range []string{"gateway", "inventory", "notifier"} {
				if ch.deployment(want) != nil && !slices.Contains(got, want) {
					ch.errorf("%s: %s pods cannot reach the session workers (peers %v)", what, want, got)
				}
			}
		default:
			if slices.Contains(openTo["grpc"], "*") {
				ch.errorf("%s: the gRPC port is open to everyone", what)
			}
		}
	}
	for _, tier := range ch.c.tiers {
		if !covered[tier] {
			ch.errorf("no NetworkPolicy for the %s pods", tier)
		}
	}
}

func portName(d *appsv1.Deployment, p intstr.IntOrString) string {
	if p.Type == intstr.String {
		return p.StrVal
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.ContainerPort == p.IntVal {
				return cp.Name
			}
		}
	}
	return strconv.Itoa(int(p.IntVal))
}

func (ch *checker) serviceMonitors() {
	ch.t.Helper()
	if want := map[bool]int{true: 1, false: 0}[ch.c.serviceMonitor]; len(ch.m.ServiceMonitors) != want {
		ch.errorf("%d ServiceMonitors, want %d", len(ch.m.ServiceMonitors), want)
	}
	for _, sm := range ch.m.ServiceMonitors {
		what := "ServiceMonitor " + sm.Name
		if len(sm.Spec.Endpoints) == 0 {
			ch.errorf("%s: no endpoints", what)
		}
		if !slices.Contains(sm.Spec.NamespaceSelector.MatchNames, ch.c.namespace) && !sm.Spec.NamespaceSelector.Any {
			ch.errorf("%s: does not look in the release namespace", what)
		}
		sel := ch.labelSelector(what, &sm.Spec.Selector)
		scraped := map[string]bool{}
		for _, s := range ch.m.Services {
			if !sel.Matches(labels.Set(s.Labels)) {
				continue
			}
			for _, ep := range sm.Spec.Endpoints {
				found := false
				for _, p := range s.Spec.Ports {
					found = found || p.Name == ep.Port
				}
				if !found {
					ch.errorf("%s: selected Service %s has no port %q", what, s.Name, ep.Port)
				}
				if ep.Path != "/metrics" {
					ch.errorf("%s: path %q, want /metrics", what, ep.Path)
				}
			}
			for _, d := range ch.selected(labels.SelectorFromSet(s.Spec.Selector)) {
				tier := d.Labels["app.kubernetes.io/component"]
				if scraped[tier] {
					ch.errorf("%s: the %s pods are scraped through two Services", what, tier)
				}
				scraped[tier] = true
			}
		}
		for _, tier := range ch.c.tiers {
			if !scraped[tier] {
				ch.errorf("%s: the %s pods are not scraped", what, tier)
			}
		}
	}
}

func (ch *checker) secret() {
	ch.t.Helper()
	s := ch.m.Secrets[ch.fullname]
	if !ch.c.chartSecret {
		if len(ch.m.Secrets) != 0 {
			ch.errorf("existingSecret in use, but the chart renders Secrets %v", keys(ch.m.Secrets))
		}
		return
	}
	if s == nil {
		ch.errorf("no Secret %s", ch.fullname)
		return
	}
	for k := range s.Data {
		if !slices.Contains([]string{"secret-key", "redis-url", "nats-url", "inventory-redis-url"}, k) {
			ch.errorf("Secret %s: unexpected key %s", s.Name, k)
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// pendingKeys are set by the chart for every tier while the code reading them is still being
// added to some tiers: a tier that does not read one yet is logged, not failed.
var pendingKeys = map[string]bool{}

// TestConfigKeysAreRead: every environment variable the chart gives a tier (ConfigMap keys and
// env entries) is read by that tier's code, so a misspelt or renamed variable fails here
// instead of being silently ignored in a cluster. It reads the Go sources of the repository
// (services/<tier>, internal/, pkg/), so it is skipped when they are absent.
func TestConfigKeysAreRead(t *testing.T) {
	root, _ := filepath.Abs(filepath.Join("..", "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "services", "gateway")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the services' sources are not at %s", root)
		}
		t.Skipf("skipping outside CI: the services' sources are not at %s", root)
	}
	// Every optional setting on, so that every key the chart can emit is rendered.
	out, err := render(t, "dmgrid", "default",
		"--set", "telemetry.otlpEndpoint=http://otel-collector:4317",
		"--set", "secrets.secretKey=q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8M=",
		"--set", "secrets.smppPassword=pw,secrets.kannelPassword=pw",
		"--set", "notifier.routes=label:carrier=a=smpp\\,label:carrier=b=kannel\\,default=webhook",
		"--set", "notifier.rateLimits=smpp=50",
		"--set", "notifier.smpp.addr=smsc:2775,notifier.smpp.systemID=dm",
		"--set", "notifier.kannel.url=http://kannel:13013/cgi-bin/sendsms,notifier.kannel.user=dm",
		"--set", "notifier.webhookURL=https://sms.example.com/send",
		"--set", "gateway.tls.enabled=true,gateway.tls.secretName=tls,gateway.tls.clientCASecretName=ca",
		"--set", "tls.grpc.enabled=true,tls.grpc.secretName=grpc-tls,tls.grpc.mutual=true,tls.grpc.serverName=session.internal")
	if err != nil {
		t.Fatal(err)
	}
	m, err := decode(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Deployments {
		tier := d.Labels["app.kubernetes.io/component"]
		src := goSources(t, filepath.Join(root, "services", tier), filepath.Join(root, "internal"), filepath.Join(root, "pkg"))
		var names []string
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil && m.ConfigMaps[ef.ConfigMapRef.Name] != nil {
					names = append(names, keys(m.ConfigMaps[ef.ConfigMapRef.Name].Data)...)
				}
			}
			for _, e := range c.Env {
				names = append(names, e.Name)
			}
		}
		for _, n := range names {
			if n == "GOMEMLIMIT" || strings.Contains(src, strconv.Quote(n)) {
				continue
			}
			if pendingKeys[n] {
				t.Logf("%s: the chart sets %s, which the %s code does not read yet", tier, n, tier)
				continue
			}
			t.Errorf("%s: the chart sets %s, which nothing in services/%s, internal/ or pkg/ reads", tier, n, tier)
		}
	}
}

// goSources concatenates the non-test Go files under dirs.
func goSources(t *testing.T, dirs ...string) string {
	var b strings.Builder
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			data, err := os.ReadFile(path)
			b.Write(data)
			return err
		})
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	return b.String()
}
