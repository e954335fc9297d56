package provider

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Router picks a provider for a device (DMGRID_NOTIFIER_ROUTES). Rules, checked in order:
//
//   - "label:<name>:<value>=<provider>": the device has the label name=value;
//   - "+<digits>=<provider>": the MSISDN starts with that prefix (the longest one wins);
//   - "default=<provider>": everything else.
//
// Example: "label:carrier:acme=kannel,+49=smpp,+4917=webhook,default=log".
type Router struct {
	labels   []labelRoute
	prefixes []prefixRoute // longest first
	def      string
}

type labelRoute struct{ name, value, provider string }

type prefixRoute struct{ prefix, provider string }

// ErrNoRoute is returned by Route when no rule matches and there is no default.
var ErrNoRoute = errors.New("no provider route")

// ParseRoutes parses a comma-separated rule list.
func ParseRoutes(s string) (*Router, error) {
	r := &Router{}
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		i := strings.LastIndexByte(entry, '=')
		if i <= 0 || i == len(entry)-1 {
			return nil, fmt.Errorf("route %q: want <rule>=<provider>", entry)
		}
		key, prov := entry[:i], entry[i+1:]
		switch {
		case key == "default":
			r.def = prov
		case strings.HasPrefix(key, "label:"):
			name, value, ok := strings.Cut(strings.TrimPrefix(key, "label:"), ":")
			if !ok || name == "" {
				return nil, fmt.Errorf("route %q: want label:<name>:<value>=<provider>", entry)
			}
			r.labels = append(r.labels, labelRoute{name, value, prov})
		case strings.HasPrefix(key, "+") && len(key) > 1 && strings.Trim(key[1:], "0123456789") == "":
			r.prefixes = append(r.prefixes, prefixRoute{key, prov})
		default:
			return nil, fmt.Errorf("route %q: rule must be default, label:<name>:<value> or +<digits>", entry)
		}
	}
	sort.SliceStable(r.prefixes, func(i, j int) bool { return len(r.prefixes[i].prefix) > len(r.prefixes[j].prefix) })
	return r, nil
}

// Providers returns every provider name the rules use.
func (r *Router) Providers() []string {
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if p != "" && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, l := range r.labels {
		add(l.provider)
	}
	for _, p := range r.prefixes {
		add(p.provider)
	}
	add(r.def)
	return out
}

// Route returns the provider for a device's MSISDN and labels.
func (r *Router) Route(msisdn string, labels map[string]string) (string, error) {
	for _, l := range r.labels {
		if v, ok := labels[l.name]; ok && v == l.value {
			return l.provider, nil
		}
	}
	n := normalizeMSISDN(msisdn)
	for _, p := range r.prefixes {
		if strings.HasPrefix(n, p.prefix) {
			return p.provider, nil
		}
	}
	if r.def == "" {
		return "", ErrNoRoute
	}
	return r.def, nil
}

// normalizeMSISDN turns "0049 170 ..." style numbers into "+49170...": spaces, dashes and
// parentheses are dropped and a leading "00" becomes "+".
func normalizeMSISDN(s string) string {
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '(', ')', '.':
			return -1
		}
		return r
	}, s)
	if strings.HasPrefix(s, "00") {
		s = "+" + s[2:]
	}
	return s
}
