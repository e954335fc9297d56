// Package envflag lets every service take its configuration from command-line flags that
// mirror its environment variables: DMGRID_HTTP_ADDR is also --http-addr, and
// OTEL_EXPORTER_OTLP_ENDPOINT --otel-exporter-otlp-endpoint. A flag wins over the variable.
// The services' ConfigFromEnv functions stay the single place that knows the names: this
// package only supplies their lookup function and rejects flags nothing asked for.
package envflag

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// FlagName is the flag that mirrors an environment variable.
func FlagName(env string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, "DMGRID_")), "_", "-")
}

// ErrHelp is returned for -h / --help; the caller prints Usage.
var ErrHelp = errors.New("help requested")

// Set is the parsed flags and the names the configuration asked for.
type Set struct {
	flags map[string]string
	env   func(string) (string, bool)
	asked map[string]bool
}

// Parse reads --name=value and --name value arguments.
func Parse(args []string, env func(string) (string, bool)) (*Set, error) {
	s := &Set{flags: map[string]string{}, env: env, asked: map[string]bool{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-h" || a == "--help" || a == "-help" {
			return s, ErrHelp
		}
		if !strings.HasPrefix(a, "-") {
			return nil, fmt.Errorf("unexpected argument %q (configuration is --name=value flags or DMGRID_* variables)", a)
		}
		name := strings.TrimLeft(a, "-")
		value, ok := "", false
		if k, v, found := strings.Cut(name, "="); found {
			name, value, ok = k, v, true
		} else if i+1 < len(args) {
			i++
			value, ok = args[i], true
		}
		if !ok || name == "" {
			return nil, fmt.Errorf("flag %q needs a value", a)
		}
		s.flags[name] = value
	}
	return s, nil
}

// Lookup is the lookup function for ConfigFromEnv: the flag if given, else the variable.
func (s *Set) Lookup(env string) (string, bool) {
	s.asked[FlagName(env)] = true
	if v, ok := s.flags[FlagName(env)]; ok {
		return v, true
	}
	return s.env(env)
}

// Unused returns an error naming flags the configuration never asked for (misspelt or of
// another service). Call it after ConfigFromEnv.
func (s *Set) Unused() error {
	var bad []string
	for f := range s.flags {
		if !s.asked[f] {
			bad = append(bad, "--"+f)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return fmt.Errorf("unknown flag(s) %s", strings.Join(bad, ", "))
}

// Usage lists the flags and variables the configuration reads (run ConfigFromEnv with this
// Set's Lookup first).
func (s *Set) Usage(service string) string {
	var envs []string
	for f := range s.asked {
		envs = append(envs, f)
	}
	sort.Strings(envs)
	var b strings.Builder
	fmt.Fprintf(&b, "usage: %s [--name=value ...]\n\nEvery setting is a flag or the environment variable it mirrors (the flag wins):\n", service)
	for _, f := range envs {
		fmt.Fprintf(&b, "  --%s\n", f)
	}
	b.WriteString("\nVariables: DMGRID_<NAME> with the flag name upper-cased and '-' as '_' (OTEL_* keep their prefix).\n")
	return b.String()
}
