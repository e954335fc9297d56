// Package gctune gives dmgrid's processes their garbage-collector settings.
//
// A dmgrid service keeps little live data (sessions and queues live in Redis) and
// allocates quickly, so Go's default GOGC=100 collects many times a second: 7–10% of the
// CPU in `make loadtest`. With GOGC=400 the collector runs a quarter as often (2% of the
// CPU there, and 15% less CPU per device message) for a heap that may grow to five times
// the live data. Against the bigger heap, the soft memory limit is set from the
// container's memory limit (cgroup v2 memory.max, or v1 memory.limit_in_bytes) at 90%,
// so the collector works harder near the limit instead of the container being killed.
//
// GOGC and GOMEMLIMIT in the environment win: an operator's setting is never overridden.
package gctune

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultGCPercent is the GOGC used when the environment does not set one.
const DefaultGCPercent = 400

// LimitFraction is the share of the container's memory limit used as the soft limit.
const LimitFraction = 0.9

// cgroupFiles are where a container's memory limit is read from (cgroup v2, then v1).
var cgroupFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// Settings reports what Apply did.
type Settings struct {
	GCPercent   int    // the GOGC in force
	GCFrom      string // "GOGC" (environment) or "default"
	MemoryLimit int64  // the soft limit set, in bytes; 0: none set by Apply
	LimitFrom   string // "GOMEMLIMIT" (environment), the cgroup file it came from, or ""
}

// Apply sets GOGC and the soft memory limit unless the environment sets them.
func Apply() Settings {
	return apply(os.LookupEnv, cgroupFiles)
}

func apply(env func(string) (string, bool), files []string) Settings {
	var s Settings
	if v, ok := env("GOGC"); ok && v != "" {
		s.GCFrom = "GOGC"
		s.GCPercent = debug.SetGCPercent(-1) // read the runtime's value back ...
		debug.SetGCPercent(s.GCPercent)      // ... and leave it as it was
	} else {
		debug.SetGCPercent(DefaultGCPercent)
		s.GCPercent, s.GCFrom = DefaultGCPercent, "default"
	}
	if v, ok := env("GOMEMLIMIT"); ok && v != "" {
		s.LimitFrom = "GOMEMLIMIT"
		return s
	}
	for _, f := range files {
		if limit, ok := readLimit(f); ok {
			s.MemoryLimit, s.LimitFrom = int64(float64(limit)*LimitFraction), f
			debug.SetMemoryLimit(s.MemoryLimit)
			break
		}
	}
	return s
}

// readLimit reads a cgroup memory limit file: a byte count, or "max" (v2) / a huge
// number (v1) for none.
func readLimit(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	v := strings.TrimSpace(string(b))
	if v == "max" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n >= 1<<60 { // v1 says "unlimited" with a page-rounded 2^63-1
		return 0, false
	}
	return n, true
}
