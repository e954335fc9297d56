package chartcheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"
)

// ServiceMonitor mirrors the monitoring.coreos.com/v1 fields the chart uses, so that a typo
// or a field the chart starts using without updating this mirror fails the strict decode.
type ServiceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ServiceMonitorSpec `json:"spec"`
}

// ServiceMonitorSpec is the part of monitoring.coreos.com/v1 ServiceMonitorSpec in use.
type ServiceMonitorSpec struct {
	JobLabel          string               `json:"jobLabel,omitempty"`
	NamespaceSelector NamespaceSelector    `json:"namespaceSelector"`
	Selector          metav1.LabelSelector `json:"selector"`
	Endpoints         []Endpoint           `json:"endpoints"`
}

// NamespaceSelector is monitoring.coreos.com/v1 NamespaceSelector.
type NamespaceSelector struct {
	Any        bool     `json:"any,omitempty"`
	MatchNames []string `json:"matchNames,omitempty"`
}

// Endpoint is the part of monitoring.coreos.com/v1 Endpoint in use.
type Endpoint struct {
	Port          string `json:"port"`
	Path          string `json:"path,omitempty"`
	Scheme        string `json:"scheme,omitempty"`
	Interval      string `json:"interval,omitempty"`
	ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
}

// The kinds the chart may render, and the Go type each decodes into. Anything else fails.
var kinds = map[schema.GroupVersionKind]func() any{
	{Group: "", Version: "v1", Kind: "ConfigMap"}:                           func() any { return new(corev1.ConfigMap) },
	{Group: "", Version: "v1", Kind: "Secret"}:                              func() any { return new(corev1.Secret) },
	{Group: "", Version: "v1", Kind: "Service"}:                             func() any { return new(corev1.Service) },
	{Group: "", Version: "v1", Kind: "ServiceAccount"}:                      func() any { return new(corev1.ServiceAccount) },
	{Group: "apps", Version: "v1", Kind: "Deployment"}:                      func() any { return new(appsv1.Deployment) },
	{Group: "autoscaling", Version: "v2", Kind: "HorizontalPodAutoscaler"}:  func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	{Group: "policy", Version: "v1", Kind: "PodDisruptionBudget"}:           func() any { return new(policyv1.PodDisruptionBudget) },
	{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"}:            func() any { return new(networkingv1.Ingress) },
	{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}:      func() any { return new(networkingv1.NetworkPolicy) },
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}: func() any { return new(ServiceMonitor) },
}

// Manifests is one rendering, decoded and indexed.
type Manifests struct {
	All             []any
	Deployments     []*appsv1.Deployment
	Services        []*corev1.Service
	ConfigMaps      map[string]*corev1.ConfigMap
	Secrets         map[string]*corev1.Secret
	ServiceAccounts map[string]*corev1.ServiceAccount
	HPAs            []*autoscalingv2.HorizontalPodAutoscaler
	PDBs            []*policyv1.PodDisruptionBudget
	Ingresses       []*networkingv1.Ingress
	NetworkPolicies []*networkingv1.NetworkPolicy
	ServiceMonitors []*ServiceMonitor
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decode splits helm's output into documents and decodes each strictly: YAML duplicate keys,
// unknown fields (case-sensitively, as the API server does) and unknown kinds are errors.
func decode(out []byte) (*Manifests, error) {
	m := &Manifests{
		ConfigMaps:      map[string]*corev1.ConfigMap{},
		Secrets:         map[string]*corev1.Secret{},
		ServiceAccounts: map[string]*corev1.ServiceAccount{},
	}
	seen := map[string]bool{}
	for i, doc := range docSep.Split(string(out), -1) {
		if isBlank(doc) {
			continue
		}
		j, err := sigsyaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("document %d: %v\n%s", i, err, doc)
		}
		if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
			continue
		}
		var tm metav1.TypeMeta
		if err := json.Unmarshal(j, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %v", i, err)
		}
		gvk := schema.FromAPIVersionAndKind(tm.APIVersion, tm.Kind)
		newObj, ok := kinds[gvk]
		if !ok {
			return nil, fmt.Errorf("document %d: unexpected kind %s\n%s", i, gvk, doc)
		}
		obj := newObj()
		strictErrs, err := kjson.UnmarshalStrict(j, obj)
		if err != nil {
			return nil, fmt.Errorf("document %d (%s): %v", i, gvk.Kind, err)
		}
		if len(strictErrs) > 0 {
			return nil, fmt.Errorf("document %d (%s): strict decoding: %v\n%s", i, gvk.Kind, strictErrs, doc)
		}
		meta := objectMeta(obj)
		key := gvk.Kind + "/" + meta.Namespace + "/" + meta.Name
		if meta.Name == "" {
			return nil, fmt.Errorf("document %d (%s): no metadata.name", i, gvk.Kind)
		}
		if seen[key] {
			return nil, fmt.Errorf("duplicate object %s", key)
		}
		seen[key] = true
		m.All = append(m.All, obj)
		switch o := obj.(type) {
		case *appsv1.Deployment:
			m.Deployments = append(m.Deployments, o)
		case *corev1.Service:
			m.Services = append(m.Services, o)
		case *corev1.ConfigMap:
			m.ConfigMaps[o.Name] = o
		case *corev1.Secret:
			m.Secrets[o.Name] = o
		case *corev1.ServiceAccount:
			m.ServiceAccounts[o.Name] = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			m.HPAs = append(m.HPAs, o)
		case *policyv1.PodDisruptionBudget:
			m.PDBs = append(m.PDBs, o)
		case *networkingv1.Ingress:
			m.Ingresses = append(m.Ingresses, o)
		case *networkingv1.NetworkPolicy:
			m.NetworkPolicies = append(m.NetworkPolicies, o)
		case *ServiceMonitor:
			m.ServiceMonitors = append(m.ServiceMonitors, o)
		}
	}
	return m, nil
}

// isBlank reports whether a document holds only comments and white space (helm emits
// those for templates that render nothing).
func isBlank(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

func objectMeta(obj any) *metav1.ObjectMeta {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return &o.ObjectMeta
	case *corev1.Service:
		return &o.ObjectMeta
	case *corev1.ConfigMap:
		return &o.ObjectMeta
	case *corev1.Secret:
		return &o.ObjectMeta
	case *corev1.ServiceAccount:
		return &o.ObjectMeta
	case *autoscalingv2.HorizontalPodAutoscaler:
		return &o.ObjectMeta
	case *policyv1.PodDisruptionBudget:
		return &o.ObjectMeta
	case *networkingv1.Ingress:
		return &o.ObjectMeta
	case *networkingv1.NetworkPolicy:
		return &o.ObjectMeta
	case *ServiceMonitor:
		return &o.ObjectMeta
	}
	panic(fmt.Sprintf("objectMeta: %T", obj))
}
