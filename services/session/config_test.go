package session

import (
	"strings"
	"testing"
	"time"
)

func lookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestConfigFromEnv(t *testing.T) {
	c, err := ConfigFromEnv(lookup(map[string]string{"DMGRID_REDIS_URL": "redis://127.0.0.1:6379/0", "DMGRID_DEVDETAIL_EVERY": "0"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPCAddr != ":9090" || c.IdleTimeout != 5*time.Minute || c.MaxAttempts != 3 || c.DevDetailEvery != 0 {
		t.Fatalf("defaults: %+v", c)
	}
	// Every bad value is reported, each naming its variable.
	_, err = ConfigFromEnv(lookup(map[string]string{"DMGRID_IDLE_TIMEOUT": "soon", "DMGRID_SECRET_KEY": "short", "DMGRID_MAX_ATTEMPTS": "-1"}))
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, v := range []string{"DMGRID_IDLE_TIMEOUT", "DMGRID_SECRET_KEY", "DMGRID_MAX_ATTEMPTS"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error does not name %s: %v", v, err)
		}
	}
	for v, want := range map[string]string{"5s": "at most 1s", "-1ms": "want a duration"} {
		_, err = ConfigFromEnv(lookup(map[string]string{"DMGRID_REDIS_URL": "redis://x", "DMGRID_OUTBOX_LINGER": v}))
		if err == nil || !strings.Contains(err.Error(), "DMGRID_OUTBOX_LINGER") || !strings.Contains(err.Error(), want) {
			t.Errorf("DMGRID_OUTBOX_LINGER=%s: %v", v, err)
		}
	}
	if c, err := ConfigFromEnv(lookup(map[string]string{"DMGRID_REDIS_URL": "redis://x", "DMGRID_OUTBOX_LINGER": "2ms"})); err != nil || c.OutboxLinger != 2*time.Millisecond {
		t.Errorf("DMGRID_OUTBOX_LINGER=2ms: %v, %v", c.OutboxLinger, err)
	}
	_, err = ConfigFromEnv(lookup(map[string]string{}))
	if err == nil || !strings.Contains(err.Error(), "DMGRID_REDIS_URL") {
		t.Fatalf("missing Redis: %v", err)
	}
	_, err = ConfigFromEnv(lookup(map[string]string{"DMGRID_REDIS_URL": "redis://x", "DMGRID_REDIS_CLUSTER_ADDRS": "a:1"}))
	if err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("contradictory Redis settings: %v", err)
	}
	// Cluster seeds: spaces trimmed, empty entries dropped, each one host:port.
	c, err = ConfigFromEnv(lookup(map[string]string{"DMGRID_REDIS_CLUSTER_ADDRS": " r1:7000, r2:7001,,[::1]:7002 ,"}))
	if err != nil || strings.Join(c.RedisClusterAddrs, "|") != "r1:7000|r2:7001|[::1]:7002" {
		t.Fatalf("cluster addresses %q: %v", c.RedisClusterAddrs, err)
	}
	for _, v := range []string{"r1:7000,r2", "r1:7000, :7001", "r1:port", "r1:70000", "r1:"} {
		_, err = ConfigFromEnv(lookup(map[string]string{"DMGRID_REDIS_CLUSTER_ADDRS": v}))
		if err == nil || !strings.Contains(err.Error(), "DMGRID_REDIS_CLUSTER_ADDRS") || !strings.Contains(err.Error(), "host:port") {
			t.Errorf("DMGRID_REDIS_CLUSTER_ADDRS=%q: %v", v, err)
		}
	}
}
