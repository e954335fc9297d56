// Package testredis gives tests a real Redis: $REDIS_URL when set, else a redis-server
// started on a free loopback port for the test binary. Only when no redis-server exists
// (a laptop without it) does it fall back to an embedded Redis-protocol server, and it says
// so; under CI=true a missing redis-server fails the test instead, so CI always runs
// against real Redis. Tests isolate their data with Prefix.
package testredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

var (
	once    sync.Once
	shared  string
	sharedE error
)

// URL returns the address of a Redis for this test binary (started once, stopped when the
// process exits).
func URL(tb testing.TB) string {
	tb.Helper()
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	once.Do(func() { shared, sharedE = startServer() })
	if sharedE != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("redis-server: %v (CI must install redis-server)", sharedE)
		}
		m := miniredis.NewMiniRedis()
		if err := m.Start(); err != nil {
			tb.Fatalf("embedded redis: %v", err)
		}
		tb.Cleanup(m.Close)
		tb.Logf("testredis: %v; using an embedded Redis-protocol server (miniredis), not real Redis", sharedE)
		return "redis://" + m.Addr()
	}
	return shared
}

// Client returns a go-redis client for URL, closed at cleanup.
func Client(tb testing.TB) *redis.Client {
	tb.Helper()
	opt, err := redis.ParseURL(URL(tb))
	if err != nil {
		tb.Fatalf("parse redis url: %v", err)
	}
	c := redis.NewClient(opt)
	tb.Cleanup(func() { c.Close() })
	return c
}

// Prefix returns a key prefix unique to this test.
func Prefix(tb testing.TB) string {
	b := make([]byte, 4)
	rand.Read(b)
	name := strings.NewReplacer("/", "_", " ", "_", "{", "", "}", "").Replace(tb.Name())
	return "t:" + name + ":" + hex.EncodeToString(b)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startServer() (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server not installed")
	}
	addr, err := spawn(bin, os.TempDir())
	if err != nil {
		return "", err
	}
	return "redis://" + addr, nil
}

// StartServer starts a redis-server for a program that is not a test (the load test): on a
// free loopback port, with no persistence, its files in a new directory under dir (""
// means os.TempDir()). stop kills it and removes the directory; the server also dies with
// the calling process. extra are further redis-server arguments.
func StartServer(dir string, extra ...string) (url string, stop func(), err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, fmt.Errorf("redis-server not installed")
	}
	if dir == "" {
		dir = os.TempDir()
	}
	d, err := os.MkdirTemp(dir, "dmgrid-redis-")
	if err != nil {
		return "", nil, err
	}
	addr, cmd, err := spawnCmd(bin, d, extra...)
	if err != nil {
		os.RemoveAll(d)
		return "", nil, err
	}
	var once sync.Once
	return "redis://" + addr, func() {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
			os.RemoveAll(d)
		})
	}, nil
}

// spawn starts one redis-server on a free port and waits until it answers PING. The
// process is tied to the test binary: it exits when its parent does (--daemonize no, and
// the test's cleanup or the binary's exit kills it).
func spawn(bin, dir string, extra ...string) (string, error) {
	addr, _, err := spawnCmd(bin, dir, extra...)
	return addr, err
}

// spawnCmd is spawn that also returns the process.
func spawnCmd(bin, dir string, extra ...string) (string, *exec.Cmd, error) {
	var lastErr error
	for try := 0; try < 5; try++ {
		port, err := FreePort()
		if err != nil {
			return "", nil, err
		}
		d, err := os.MkdirTemp(dir, "redis-")
		if err != nil {
			return "", nil, err
		}
		args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", d, "--daemonize", "no"}, extra...)
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = nil, nil
		// The server dies with the test binary, even when the binary is killed.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return "", nil, fmt.Errorf("start redis-server: %w", err)
		}
		processes = append(processes, cmd)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if err := waitPing(addr, 5*time.Second); err != nil {
			lastErr = err
			cmd.Process.Kill()
			continue
		}
		return addr, cmd, nil
	}
	return "", nil, fmt.Errorf("redis-server did not come up: %w", lastErr)
}

var processes []*exec.Cmd

func waitPing(addr string, within time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Cluster starts a three-master Redis Cluster (redis-server --cluster-enabled yes) on
// loopback ports and returns its addresses; the processes stop at test cleanup.
func Cluster(tb testing.TB) []string {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	cli, err2 := exec.LookPath("redis-cli")
	if err != nil || err2 != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal("redis-server/redis-cli not installed; CI must install redis-server")
		}
		tb.Skip("redis-server/redis-cli not installed; skipping the cluster test outside CI")
	}
	dir := tb.TempDir()
	var addrs []string
	start := len(processes)
	for i := 0; i < 3; i++ {
		addr, err := spawn(bin, dir, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", i)), "--cluster-node-timeout", "2000")
		if err != nil {
			tb.Fatal(err)
		}
		addrs = append(addrs, addr)
	}
	procs := processes[start:]
	tb.Cleanup(func() {
		for _, p := range procs {
			p.Process.Kill()
			p.Wait()
		}
	})
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Ready means every node says cluster_state:ok (they learn the slot map by gossip, one
	// after another) and a cluster client can write to keys in every node's slots.
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		info := ""
		ready := true
		for _, a := range addrs {
			n := redis.NewClient(&redis.Options{Addr: a})
			info, err = n.ClusterInfo(context.Background()).Result()
			n.Close()
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				ready = false
				break
			}
		}
		if ready {
			for i := 0; i < 32 && err == nil; i++ {
				err = c.Set(context.Background(), fmt.Sprintf("{ready-%d}", i), "1", time.Minute).Err()
			}
			if err == nil {
				return addrs
			}
			ready = false
		}
		if time.Now().After(deadline) {
			tb.Fatalf("cluster did not become ready: %v %s", err, info)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
