package notifier

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/dmgrid/dmgrid/internal/envflag"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestConfigFromEnv(t *testing.T) {
	c, err := ConfigFromEnv(env(map[string]string{
		"DMGRID_REDIS_URL": "redis://127.0.0.1:6379/0", "DMGRID_SESSION_ADDR": "127.0.0.1:9090",
		"DMGRID_NOTIFIER_ROUTES": "+49=smpp,default=log", "DMGRID_SMPP_ADDR": "127.0.0.1:2775",
		"DMGRID_NOTIFIER_RATE_LIMITS": "smpp=50,log=2.5:10", "DMGRID_PKG0_VERSION": "12",
		"DMGRID_NOTIFIER_BACKOFF_MIN": "1s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.PKG0Version != 12 || c.RateLimits["smpp"] != (RateLimit{50, 50}) || c.RateLimits["log"] != (RateLimit{2.5, 10}) ||
		c.BackoffMin != time.Second || c.MaxAttempts != 5 || c.GRPCAddr != ":9092" {
		t.Fatalf("config = %+v", c)
	}
	c, err = ConfigFromEnv(env(map[string]string{"DMGRID_REDIS_URL": "redis://x:1", "DMGRID_SESSION_ADDR": "s:1"}))
	if err != nil || c.PKG0Version != 11 || c.Routes != "default=log" {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	for _, bad := range []map[string]string{
		{"DMGRID_SESSION_ADDR": "s:1"},
		{"DMGRID_REDIS_URL": "redis://x:1"},
		{"DMGRID_REDIS_URL": "redis://x:1", "DMGRID_SESSION_ADDR": "s:1", "DMGRID_NOTIFIER_ROUTES": "default=smpp"},
		{"DMGRID_REDIS_URL": "redis://x:1", "DMGRID_SESSION_ADDR": "s:1", "DMGRID_NOTIFIER_ROUTES": "49=log"},
		{"DMGRID_REDIS_URL": "redis://x:1", "DMGRID_SESSION_ADDR": "s:1", "DMGRID_PKG0_VERSION": "1024"},
		{"DMGRID_REDIS_URL": "redis://x:1", "DMGRID_SESSION_ADDR": "s:1", "DMGRID_NOTIFIER_RATE_LIMITS": "smpp=0"},
		{"DMGRID_REDIS_URL": "redis://x:1", "DMGRID_SESSION_ADDR": "s:1", "DMGRID_NOTIFIER_LEASE": "5s"},
		{"DMGRID_REDIS_URL": "redis://x:1", "DMGRID_SESSION_ADDR": "s:1", "DMGRID_NOTIFIER_BACKOFF_MIN": "1h"},
	} {
		if _, err := ConfigFromEnv(env(bad)); err == nil {
			t.Errorf("accepted %v", bad)
		}
	}
}

func TestSessionIDMatches(t *testing.T) {
	for _, c := range []struct {
		s  string
		id uint16
		ok bool
	}{
		{"1A2B", 0x1A2B, true}, {"1a2b", 0x1A2B, true}, {"01A2B", 0x1A2B, true}, {"6699", 0x1A2B, true},
		{"1", 1, true}, {"0001", 1, true}, {"FFFF", 0xFFFF, true}, {"65535", 0xFFFF, true},
		{"2B1A", 0x1A2B, false}, {"", 0, false}, {"1A2C", 0x1A2B, false}, {"x", 1, false},
		{strings.Repeat("0", 30) + "1", 1, false},
	} {
		if got := SessionIDMatches(c.s, c.id); got != c.ok {
			t.Errorf("SessionIDMatches(%q, %#x) = %v", c.s, c.id, got)
		}
	}
}

func TestBackoff(t *testing.T) {
	s := &Service{cfg: Config{BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second}}
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 60: time.Second} {
		for i := 0; i < 50; i++ {
			if d := s.backoff(attempt); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}

// TestDeadLetterConfig: the dead-letter subject and stream default as the inventory's do,
// are read from the environment or the mirroring flags (listed by --help), and are checked
// at start.
func TestDeadLetterConfig(t *testing.T) {
	base := map[string]string{"DMGRID_REDIS_URL": "redis://x:1", "DMGRID_SESSION_ADDR": "s:1"}
	with := func(kv ...string) map[string]string {
		m := maps.Clone(base)
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	c, err := ConfigFromEnv(env(base))
	if err != nil || c.DeadLetterSubject != "dmgrid.deadletter.notifier" || c.DeadLetterStream != "DMGRID_DEADLETTER" {
		t.Fatalf("defaults: %q %q %v", c.DeadLetterSubject, c.DeadLetterStream, err)
	}
	c, err = ConfigFromEnv(env(with("DMGRID_NOTIFIER_DEADLETTER_SUBJECT", "ops.deadletter.notifier", "DMGRID_DEADLETTER_STREAM", "none")))
	if err != nil || c.DeadLetterSubject != "ops.deadletter.notifier" || c.DeadLetterStream != "" {
		t.Fatalf("set: %q %q %v", c.DeadLetterSubject, c.DeadLetterStream, err)
	}
	if (Config{}).deadLetterSubject() != "dmgrid.deadletter.notifier" {
		t.Fatal("an unset subject in a Config literal is not the default")
	}
	for _, bad := range []map[string]string{
		with("DMGRID_NOTIFIER_DEADLETTER_SUBJECT", "dmgrid.events.dl"), // consumed again
		with("DMGRID_NOTIFIER_DEADLETTER_SUBJECT", "dmgrid.deadletter.*"),
		with("DMGRID_NOTIFIER_DEADLETTER_SUBJECT", "dead letters"),
		with("DMGRID_DEADLETTER_STREAM", "DL.x"),
	} {
		if _, err := ConfigFromEnv(env(bad)); err == nil || !strings.Contains(err.Error(), "DEADLETTER") {
			t.Errorf("accepted %v: %v", bad, err)
		}
	}
	// Flags mirror the variables and --help lists them.
	set, err := envflag.Parse([]string{"--notifier-deadletter-subject=ops.dl", "--deadletter-stream", "OPS_DL"}, env(base))
	if err != nil {
		t.Fatal(err)
	}
	if c, err = ConfigFromEnv(set.Lookup); err != nil || c.DeadLetterSubject != "ops.dl" || c.DeadLetterStream != "OPS_DL" {
		t.Fatalf("flags: %q %q %v", c.DeadLetterSubject, c.DeadLetterStream, err)
	}
	if err := set.Unused(); err != nil {
		t.Fatal(err)
	}
	if u := set.Usage("dmgrid-notifier"); !strings.Contains(u, "--notifier-deadletter-subject\n") || !strings.Contains(u, "--deadletter-stream\n") {
		t.Fatalf("--help lacks the dead-letter flags:\n%s", u)
	}
}
