package chartcheck

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// defaultHelmVersion is the helm built from the Go module proxy when $HELM is not set; the
// Makefile passes its HELM_VERSION and HELM (the binary it built) instead.
const defaultHelmVersion = "v3.22.0"

// defaultKubeVersion is the Kubernetes version helm renders for (its built-in default comes
// from link-time flags and is v1.20 when helm is built with plain `go install`).
const defaultKubeVersion = "1.37.0"

func helmVersion() string {
	if v := os.Getenv("HELM_VERSION"); v != "" {
		return v
	}
	return defaultHelmVersion
}

func kubeVersion() string {
	if v := os.Getenv("KUBE_VERSION"); v != "" {
		return v
	}
	return defaultKubeVersion
}

func chartDir(t testing.TB) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("..", "dmgrid"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d, "Chart.yaml")); err != nil {
		t.Fatalf("chart not found: %v", err)
	}
	return d
}

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
	helmTmp  string // the directory of a helm built by locateHelm, removed by TestMain
)

func TestMain(m *testing.M) {
	code := m.Run()
	if helmTmp != "" {
		os.RemoveAll(helmTmp)
	}
	os.Exit(code)
}

// findHelm returns a helm binary: $HELM, then bin/helm-<version> or bin/helm at the
// repository root (what `make helm-lint` builds), then one built now from the Go module proxy
// into a temporary directory (the build cache makes that fast after the first time). When
// none can be had the test fails under CI=true or when $HELM was given, and is skipped
// otherwise.
func findHelm(t testing.TB) string {
	t.Helper()
	helmOnce.Do(func() { helmPath, helmErr = locateHelm() })
	if helmErr != nil {
		if os.Getenv("CI") == "true" || os.Getenv("HELM") != "" {
			t.Fatalf("helm is required under CI=true: %v", helmErr)
		}
		t.Skipf("skipping outside CI: no helm (%v); set $HELM or run make helm-lint", helmErr)
	}
	return helmPath
}

func locateHelm() (string, error) {
	if h := os.Getenv("HELM"); h != "" {
		p, err := exec.LookPath(h)
		if err != nil {
			return "", fmt.Errorf("$HELM=%s: %w", h, err)
		}
		return p, nil
	}
	root, _ := filepath.Abs(filepath.Join("..", "..", ".."))
	for _, name := range []string{"helm-" + helmVersion(), "helm"} {
		p := filepath.Join(root, "bin", name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no $HELM, no bin/helm and no go to build it: %w", err)
	}
	dir, err := os.MkdirTemp("", "chartcheck-helm-")
	if err != nil {
		return "", err
	}
	helmTmp = dir
	cmd := exec.Command(goBin, "install", "-trimpath", "-ldflags", helmLDFlags(),
		"helm.sh/helm/v3/cmd/helm@"+helmVersion())
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go install helm.sh/helm/v3/cmd/helm@%s: %v\n%s", helmVersion(), err, out.String())
	}
	fmt.Fprintf(os.Stderr, "chartcheck: built helm %s in %s\n", helmVersion(), time.Since(start).Round(time.Second))
	return filepath.Join(dir, "helm"), nil
}

// helmLDFlags mirror the Makefile's: the version helm reports and the Kubernetes version its
// lint and template default to (the client-go minor of helm v3.22).
func helmLDFlags() string {
	return "-s -w" +
		" -X helm.sh/helm/v3/internal/version.version=" + helmVersion() +
		" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37" +
		" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37"
}

// render runs helm template and returns stdout, or the error with helm's stderr.
func render(t testing.TB, release, namespace string, args ...string) ([]byte, error) {
	t.Helper()
	helm := findHelm(t)
	full := append([]string{"template", release, chartDir(t), "--namespace", namespace,
		"--kube-version", kubeVersion()}, args...)
	cmd := exec.Command(helm, full...)
	// No user helm configuration or repositories leak in.
	tmp := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+tmp, "HELM_CONFIG_HOME="+tmp, "HELM_DATA_HOME="+tmp)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm %s: %v: %s", strings.Join(full, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
