package gctune

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// restore puts the runtime's settings back after a test.
func restore(t *testing.T) {
	gc := debug.SetGCPercent(-1)
	debug.SetGCPercent(gc)
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(gc); debug.SetMemoryLimit(limit) })
}

func write(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "memory.max")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsFromCgroup(t *testing.T) {
	restore(t)
	f := write(t, "1073741824\n")
	s := apply(envOf(nil), []string{filepath.Join(t.TempDir(), "absent"), f})
	if s.GCPercent != DefaultGCPercent || s.GCFrom != "default" || debug.SetGCPercent(-1) != DefaultGCPercent {
		t.Fatalf("GOGC: %+v", s)
	}
	debug.SetGCPercent(DefaultGCPercent)
	limitBytes := 1073741824.0
	want := int64(limitBytes * LimitFraction)
	if s.MemoryLimit != want || s.LimitFrom != f || debug.SetMemoryLimit(-1) != want {
		t.Fatalf("memory limit: %+v (runtime %d), want %d from %s", s, debug.SetMemoryLimit(-1), want, f)
	}
}

func TestEnvironmentWins(t *testing.T) {
	restore(t)
	debug.SetGCPercent(150) // as the runtime would have from GOGC=150
	limit := debug.SetMemoryLimit(-1)
	s := apply(envOf(map[string]string{"GOGC": "150", "GOMEMLIMIT": "512MiB"}), []string{write(t, "1073741824")})
	if s.GCPercent != 150 || s.GCFrom != "GOGC" || debug.SetGCPercent(-1) != 150 {
		t.Fatalf("GOGC overridden: %+v", s)
	}
	debug.SetGCPercent(150)
	if s.MemoryLimit != 0 || s.LimitFrom != "GOMEMLIMIT" || debug.SetMemoryLimit(-1) != limit {
		t.Fatalf("GOMEMLIMIT overridden: %+v", s)
	}
}

func TestNoLimit(t *testing.T) {
	restore(t)
	limit := debug.SetMemoryLimit(-1)
	for _, content := range []string{"max\n", "9223372036854771712\n", "garbage", "0"} {
		s := apply(envOf(nil), []string{write(t, content)})
		if s.MemoryLimit != 0 || s.LimitFrom != "" || debug.SetMemoryLimit(-1) != limit {
			t.Fatalf("%q: %+v", content, s)
		}
	}
}
