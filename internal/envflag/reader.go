package envflag

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Reader reads typed settings through a lookup (Set.Lookup, os.LookupEnv or a test map)
// and collects every problem, each naming its variable, so that a service reports all of
// its configuration errors at once.
type Reader struct {
	lookup func(string) (string, bool)
	errs   []error
}

// NewReader returns a reader over lookup.
func NewReader(lookup func(string) (string, bool)) *Reader { return &Reader{lookup: lookup} }

// String returns the setting, or def when it is unset or empty.
func (r *Reader) String(k, def string) string {
	if v, ok := r.lookup(k); ok && v != "" {
		return v
	}
	return def
}

// StringOrEmpty returns the setting, "" when it is set to the empty string (for settings
// where empty turns a feature off, such as DMGRID_METRICS_ADDR), or def when it is unset.
func (r *Reader) StringOrEmpty(k, def string) string {
	if v, ok := r.lookup(k); ok {
		return v
	}
	return def
}

// HostPorts returns a comma-separated list of host:port addresses (such as
// DMGRID_REDIS_CLUSTER_ADDRS), entries trimmed and empty ones dropped; nil when unset. An
// entry that is not host:port with a port in 1..65535 is an error naming k and the entry.
func (r *Reader) HostPorts(k string) []string {
	var out []string
	for _, a := range strings.Split(r.String(k, ""), ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if p, perr := strconv.ParseUint(port, 10, 16); err != nil || host == "" || perr != nil || p == 0 {
			r.errs = append(r.errs, fmt.Errorf("%s: %q is not host:port", k, a))
			continue
		}
		out = append(out, a)
	}
	return out
}

// Duration returns a positive duration.
func (r *Reader) Duration(k, def string) time.Duration {
	d, err := time.ParseDuration(r.String(k, def))
	if err != nil || d <= 0 {
		r.errs = append(r.errs, fmt.Errorf("%s: want a positive duration such as 30s", k))
	}
	return d
}

// DurationOrZero returns a duration that may be zero (0 turns the feature off).
func (r *Reader) DurationOrZero(k, def string) time.Duration {
	d, err := time.ParseDuration(r.String(k, def)) // "0" parses as 0
	if err != nil || d < 0 {
		r.errs = append(r.errs, fmt.Errorf("%s: want a duration such as 30s, or 0", k))
	}
	return d
}

// Bool returns a boolean (true/false, 1/0).
func (r *Reader) Bool(k, def string) bool {
	b, err := strconv.ParseBool(r.String(k, def))
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s: want true or false", k))
	}
	return b
}

// Int returns a positive integer.
func (r *Reader) Int(k, def string) int {
	n, err := strconv.Atoi(r.String(k, def))
	if err != nil || n <= 0 {
		r.errs = append(r.errs, fmt.Errorf("%s: want a positive integer", k))
	}
	return n
}

// Fail records a problem found by the caller.
func (r *Reader) Fail(err error) { r.errs = append(r.errs, err) }

// Err returns every problem recorded, joined, or nil.
func (r *Reader) Err() error { return errors.Join(r.errs...) }
