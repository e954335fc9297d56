// Package vectors locates the shared OMA DM test vectors (../shared/omadm/vectors beside the
// repository) for tests. Under CI=true a missing vector directory fails the test instead of
// skipping it, so CI always proves the vectors pass.
package vectors

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the vectors directory: $DMGRID_VECTORS if set, else the first
// shared/omadm/vectors found walking up from the working directory.
func Dir(tb testing.TB) string {
	tb.Helper()
	if d := os.Getenv("DMGRID_VECTORS"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatalf("getwd: %v", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		c := filepath.Join(d, "shared", "omadm", "vectors")
		if st, err := os.Stat(c); err == nil && st.IsDir() {
			return c
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("shared/omadm/vectors not found above %s (set DMGRID_VECTORS)", wd)
	}
	tb.Skipf("shared/omadm/vectors not found above %s (set DMGRID_VECTORS); skipping outside CI", wd)
	return ""
}

// Messages returns the messages directory.
func Messages(tb testing.TB) string { tb.Helper(); return filepath.Join(Dir(tb), "messages") }

// Read returns the bytes of a file below the vectors directory.
func Read(tb testing.TB, rel string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(tb), rel))
	if err != nil {
		tb.Fatalf("read vector: %v", err)
	}
	return b
}

// Glob returns the files below the vectors directory matching pattern (relative).
func Glob(tb testing.TB, pattern string) []string {
	tb.Helper()
	m, err := filepath.Glob(filepath.Join(Dir(tb), pattern))
	if err != nil {
		tb.Fatalf("glob %s: %v", pattern, err)
	}
	if len(m) == 0 {
		tb.Fatalf("no vectors match %s", pattern)
	}
	return m
}
