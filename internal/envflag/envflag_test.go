package envflag

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestFlagsMirrorEnv(t *testing.T) {
	env := map[string]string{"DMGRID_HTTP_ADDR": ":1", "DMGRID_SESSION_ADDR": "a:1"}
	s, err := Parse([]string{"--http-addr=:2", "--otel-exporter-otlp-endpoint", "c:4317"}, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Lookup("DMGRID_HTTP_ADDR"); v != ":2" {
		t.Errorf("flag did not win: %q", v)
	}
	if v, _ := s.Lookup("DMGRID_SESSION_ADDR"); v != "a:1" {
		t.Errorf("variable not used: %q", v)
	}
	if v, _ := s.Lookup("OTEL_EXPORTER_OTLP_ENDPOINT"); v != "c:4317" {
		t.Errorf("otel flag: %q", v)
	}
	if err := s.Unused(); err != nil {
		t.Fatal(err)
	}
	s2, _ := Parse([]string{"--htp-addr=:2"}, func(string) (string, bool) { return "", false })
	s2.Lookup("DMGRID_HTTP_ADDR")
	if err := s2.Unused(); err == nil || !strings.Contains(err.Error(), "--htp-addr") {
		t.Fatalf("misspelt flag accepted: %v", err)
	}
	if _, err := Parse([]string{"--help"}, nil); !errors.Is(err, ErrHelp) {
		t.Fatal("--help not recognised")
	}
	if _, err := Parse([]string{"--http-addr"}, nil); err == nil {
		t.Fatal("flag without value accepted")
	}
	if !strings.Contains(s.Usage("x"), "--http-addr") {
		t.Fatal("usage lacks the flags asked for")
	}
}

func TestRealMainConfigErrorsAreOneLine(t *testing.T) {
	type cfg struct{ Addr string }
	config := func(lookup func(string) (string, bool)) (cfg, error) {
		v, _ := lookup("DMGRID_HTTP_ADDR")
		if v == "" {
			return cfg{}, errors.Join(errors.New("DMGRID_HTTP_ADDR is required"), errors.New("DMGRID_OTHER: bad"))
		}
		return cfg{Addr: v}, nil
	}
	ran := ""
	run := func(_ context.Context, c cfg, _ *slog.Logger) error { ran = c.Addr; return nil }
	var out, errOut strings.Builder
	none := func(string) (string, bool) { return "", false }
	if code := realMain(context.Background(), "svc", nil, none, &out, &errOut, config, run); code != 2 ||
		strings.Count(errOut.String(), "\n") != 1 || !strings.Contains(errOut.String(), "DMGRID_HTTP_ADDR is required; DMGRID_OTHER") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	if code := realMain(context.Background(), "svc", []string{"--http-addr=:9"}, none, &out, &errOut, config, run); code != 0 || ran != ":9" {
		t.Fatalf("exit %d ran %q %s", code, ran, errOut.String())
	}
	if code := realMain(context.Background(), "svc", []string{"--http-adr=:9"}, none, &out, &errOut, config, run); code != 2 {
		t.Fatalf("misspelt flag: exit %d", code)
	}
	out.Reset()
	if code := realMain(context.Background(), "svc", []string{"--help"}, none, &out, &errOut, config, run); code != 0 || !strings.Contains(out.String(), "--http-addr") {
		t.Fatalf("help: exit %d %q", code, out.String())
	}
}

func TestReader(t *testing.T) {
	env := map[string]string{"A": "x", "D": "5s", "N": "7", "BADD": "-1s", "BADN": "zero"}
	r := NewReader(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if r.String("A", "d") != "x" || r.String("MISSING", "d") != "d" || r.Duration("D", "1s") != 5*time.Second || r.Int("N", "1") != 7 {
		t.Fatal("values")
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	r.Duration("BADD", "1s")
	r.Int("BADN", "1")
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "BADD") || !strings.Contains(err.Error(), "BADN") {
		t.Fatalf("errors not reported per variable: %v", err)
	}
}

func TestReaderBoolAndOptionalDuration(t *testing.T) {
	env := map[string]string{"ON": "true", "OFF": "0", "Z": "0", "D": "3s", "BADB": "maybe", "BADZ": "-2s"}
	r := NewReader(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if !r.Bool("ON", "false") || r.Bool("OFF", "true") || r.Bool("MISSING", "false") {
		t.Fatal("bools")
	}
	if r.DurationOrZero("Z", "1s") != 0 || r.DurationOrZero("D", "1s") != 3*time.Second || r.DurationOrZero("MISSING", "24h") != 24*time.Hour {
		t.Fatal("durations")
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	r.Bool("BADB", "false")
	r.DurationOrZero("BADZ", "1s")
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "BADB") || !strings.Contains(err.Error(), "BADZ") {
		t.Fatalf("errors not reported per variable: %v", err)
	}
}

// TestReaderStringOrEmpty: a setting that allows empty tells "set to empty" (the feature
// off) from "unset" (the default), through a variable and through its flag.
func TestReaderStringOrEmpty(t *testing.T) {
	env := map[string]string{"E": "", "A": "x"}
	r := NewReader(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if r.StringOrEmpty("E", "d") != "" || r.StringOrEmpty("A", "d") != "x" || r.StringOrEmpty("MISSING", "d") != "d" {
		t.Fatal("StringOrEmpty")
	}
	if r.String("E", "d") != "d" {
		t.Fatal("String: empty must still mean the default")
	}
	env = map[string]string{"DMGRID_METRICS_ADDR": ":1"}
	for _, args := range [][]string{{"--metrics-addr="}, {"--metrics-addr", ""}} {
		s, err := Parse(args, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatal(err)
		}
		if v := NewReader(s.Lookup).StringOrEmpty("DMGRID_METRICS_ADDR", ":9102"); v != "" {
			t.Errorf("%q: %q, want empty", args, v)
		}
	}
	s, _ := Parse(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if v := NewReader(s.Lookup).StringOrEmpty("DMGRID_METRICS_ADDR", ":9102"); v != ":1" {
		t.Errorf("variable: %q", v)
	}
}

func TestReaderHostPorts(t *testing.T) {
	env := map[string]string{"OK": " r1:7000, r2:7001,,[::1]:7002 ,", "BAD": "r1:7000,nohost,:1,h:0,h:65536,h:x"}
	r := NewReader(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if got := r.HostPorts("OK"); strings.Join(got, "|") != "r1:7000|r2:7001|[::1]:7002" {
		t.Errorf("OK: %q", got)
	}
	if got := r.HostPorts("UNSET"); got != nil {
		t.Errorf("unset: %q", got)
	}
	if r.Err() != nil {
		t.Fatalf("good lists: %v", r.Err())
	}
	if got := r.HostPorts("BAD"); strings.Join(got, "|") != "r1:7000" {
		t.Errorf("BAD kept %q", got)
	}
	err := r.Err()
	for _, e := range []string{`"nohost"`, `":1"`, `"h:0"`, `"h:65536"`, `"h:x"`} {
		if err == nil || !strings.Contains(err.Error(), "BAD: "+e+" is not host:port") {
			t.Errorf("no error for %s: %v", e, err)
		}
	}
}
