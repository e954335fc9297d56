// Package chartcheck tests the Helm chart in deploy/helm/dmgrid: it renders the chart with
// `helm template` for several values files, decodes every manifest strictly into the
// Kubernetes API types (unknown or duplicate fields, unknown kinds fail), checks the chart's
// invariants (probes, resources, security context, Services, HPAs, PDBs, NetworkPolicies,
// ServiceMonitor) and that values violating values.schema.json are refused.
//
// It is its own module so that the servers' module does not depend on k8s.io. Run it with
// `make helm-lint` (which builds a pinned helm into bin/) or `go test ./...` here with $HELM
// pointing at a helm binary.
package chartcheck
