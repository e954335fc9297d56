package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"

	"github.com/dmgrid/dmgrid/internal/e2e"
	"github.com/dmgrid/dmgrid/internal/testredis"
)

// target is the system under test as the load generator sees it.
type target struct {
	URL      string // the gateway's DM URL
	Prefix   string // Redis key prefix of the session workers
	Devices  devicev1.DeviceServiceClient
	Commands commandv1.CommandServiceClient
}

// child is one service process started by -processes.
type child struct {
	name    string
	tier    string // "gateway", "session", "nats"
	cmd     *exec.Cmd
	metrics string // http://host:port of its /metrics ("" for nats)
	done    chan struct{}
}

// procStack runs the tiers as separate processes, as in production: a nats-server with
// JetStream, c.workers dmgrid-session and one dmgrid-gateway, built from this checkout.
type procStack struct {
	dir      string
	children []*child
	conn     *grpc.ClientConn
	target   target
	control  string // -split: the services process's control URL (round trips, profiler)
	echoURL  string // -split: the echo handler, served by the services process
}

// gatewayMetrics is the URL of the gateway's Prometheus metrics: the gateway process's
// (-processes) or the services process's (-split).
func (ps *procStack) gatewayMetrics() string {
	for _, ch := range ps.children {
		if (ch.tier == "gateway" || ch.tier == "services") && ch.metrics != "" {
			return ch.metrics + "/metrics"
		}
	}
	return ""
}

// freeAddr is a free loopback address (testredis.FreePort's port).
func freeAddr() (string, error) {
	port, err := testredis.FreePort()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), err
}

// newProcStack builds pkgs into a temporary directory and returns a starter for them:
// each child runs in its own process group with its output on logw.
func newProcStack(ctx context.Context, logw io.Writer, pkgs ...string) (*procStack, func(name, tier, metrics string, env []string, args ...string) (*child, error), error) {
	dir, err := os.MkdirTemp("", "dmgrid-loadtest-")
	if err != nil {
		return nil, nil, err
	}
	ps := &procStack{dir: dir}
	fmt.Printf("building %s (go build) ...\n", strings.Join(pkgs, ", "))
	build := exec.CommandContext(ctx, "go", append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		ps.stop()
		return nil, nil, fmt.Errorf("go build: %w (run from the repository root)", err)
	}
	if logw == nil {
		logw = io.Discard
	}
	start := func(name, tier, metrics string, env []string, args ...string) (*child, error) {
		cmd := exec.Command(filepath.Join(dir, args[0]), args[1:]...)
		cmd.Env = append(os.Environ(), env...)
		if pprofOn {
			cmd.Env = append(cmd.Env, "DMGRID_PPROF=true")
		}
		cmd.Stdout, cmd.Stderr = logw, logw
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		ch := &child{name: name, tier: tier, cmd: cmd, metrics: metrics, done: make(chan struct{})}
		go func() { cmd.Wait(); close(ch.done) }()
		ps.children = append(ps.children, ch)
		return ch, nil
	}
	return ps, start, nil
}

// pprofOn makes the started services serve the profiler (-cpuprofile).
var pprofOn bool

// startProcesses builds the binaries (go build, into a temporary directory) and starts
// them against redisURL; logw receives their output (nil discards it).
func startProcesses(ctx context.Context, c config, redisURL, prefix string, logw io.Writer) (*procStack, error) {
	ps, start, err := newProcStack(ctx, logw, "./services/gateway/cmd/dmgrid-gateway", "./services/session/cmd/dmgrid-session", "github.com/nats-io/nats-server/v2")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*procStack, error) { ps.stop(); return nil, err }

	natsURL, err := ps.startNATS(ctx, start)
	if err != nil {
		return fail(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	var grpcAddrs []string
	for i := 0; i < c.workers; i++ {
		ga, err1 := freeAddr()
		ma, err2 := freeAddr()
		if err := errors.Join(err1, err2); err != nil {
			return fail(err)
		}
		env := []string{"DMGRID_GRPC_ADDR=" + ga, "DMGRID_METRICS_ADDR=" + ma, "DMGRID_REDIS_URL=" + redisURL,
			"DMGRID_REDIS_PREFIX=" + prefix, "DMGRID_NATS_URL=" + natsURL, "DMGRID_CHALLENGE_LIMIT=1000",
			"DMGRID_SECRET_KEY=" + base64.StdEncoding.EncodeToString(key), "DMGRID_OUTBOX_SCAN=10s", "DMGRID_OUTBOX_LINGER=" + c.outboxLinger.String(),
			"DMGRID_DEVDETAIL_EVERY=0"} // the session shape is fixed: no DevDetail collection Gets, as in-process
		if _, err := start(fmt.Sprintf("dmgrid-session-%d", i+1), "session", "http://"+ma, env, "dmgrid-session"); err != nil {
			return fail(err)
		}
		grpcAddrs = append(grpcAddrs, ga)
	}
	for _, a := range grpcAddrs {
		if err := waitTCP(ctx, a, 30*time.Second); err != nil {
			return fail(fmt.Errorf("session worker %s: %w", a, err))
		}
	}
	ha, err1 := freeAddr()
	ma, err2 := freeAddr()
	if err := errors.Join(err1, err2); err != nil {
		return fail(err)
	}
	env := []string{"DMGRID_HTTP_ADDR=" + ha, "DMGRID_METRICS_ADDR=" + ma, "DMGRID_SESSION_ADDR=" + strings.Join(grpcAddrs, ","),
		"DMGRID_MAX_BODY_BYTES=4194304", "DMGRID_REQUEST_TIMEOUT=20s"}
	if _, err := start("dmgrid-gateway", "gateway", "http://"+ma, env, "dmgrid-gateway"); err != nil {
		return fail(err)
	}
	if err := waitHTTP(ctx, "http://"+ha+"/readyz", 30*time.Second); err != nil {
		return fail(fmt.Errorf("gateway: %w", err))
	}
	if ps.conn, ps.target, err = dialTarget("http://"+ha+"/dm", prefix, grpcAddrs); err != nil {
		return fail(err)
	}
	return ps, nil
}

// startNATS starts the nats-server binary in ps.dir with JetStream on a free port.
func (ps *procStack) startNATS(ctx context.Context, start func(name, tier, metrics string, env []string, args ...string) (*child, error)) (string, error) {
	port, err := testredis.FreePort()
	if err != nil {
		return "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if _, err := start("nats-server", "nats", "", nil, "nats-server", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", filepath.Join(ps.dir, "js")); err != nil {
		return "", err
	}
	if err := waitTCP(ctx, addr, 15*time.Second); err != nil {
		return "", fmt.Errorf("nats-server: %w", err)
	}
	return "nats://" + addr, nil
}

// startNATSProcess builds nats-server (the version in go.mod) and starts it alone (-split).
func startNATSProcess(ctx context.Context, logw io.Writer) (*procStack, string, error) {
	ps, start, err := newProcStack(ctx, logw, "github.com/nats-io/nats-server/v2")
	if err != nil {
		return nil, "", err
	}
	url, err := ps.startNATS(ctx, start)
	if err != nil {
		ps.stop()
		return nil, "", err
	}
	return ps, url, nil
}

// dialTarget connects to the session workers' APIs, balanced over all of them.
func dialTarget(url, prefix string, grpcAddrs []string) (*grpc.ClientConn, target, error) {
	conn, err := e2e.DialWorkers(grpcAddrs)
	if err != nil {
		return nil, target{}, err
	}
	return conn, target{URL: url, Prefix: prefix, Devices: devicev1.NewDeviceServiceClient(conn), Commands: commandv1.NewCommandServiceClient(conn)}, nil
}

// stop ends every child (SIGTERM, then SIGKILL after 10 s) and removes the binaries.
func (ps *procStack) stop() {
	if ps.conn != nil {
		ps.conn.Close()
	}
	for i := len(ps.children) - 1; i >= 0; i-- { // gateway first, nats last
		ch := ps.children[i]
		syscall.Kill(-ch.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-ch.done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-ch.cmd.Process.Pid, syscall.SIGKILL)
			<-ch.done
		}
	}
	if ps.dir != "" {
		os.RemoveAll(ps.dir)
	}
}

// profile fetches a CPU profile of every dmgrid process for d, concurrently, into
// prefix.<process name>; it returns when they are written.
func (ps *procStack) profile(prefix string, d time.Duration) {
	var wg sync.WaitGroup
	for _, ch := range ps.children {
		if ch.metrics == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", ch.metrics, max(1, int(d.Seconds()))))
			if err != nil {
				fmt.Fprintf(os.Stderr, "loadtest: profile of %s: %v\n", ch.name, err)
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(prefix + "." + ch.name)
			if err != nil {
				return
			}
			defer f.Close()
			io.Copy(f, resp.Body)
		}()
	}
	wg.Wait()
}

// cpu returns each tier's CPU time so far (utime + stime from /proc/<pid>/stat).
func (ps *procStack) cpu() map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, ch := range ps.children {
		out[ch.tier] += procCPU(ch.cmd.Process.Pid)
	}
	return out
}

// procCPU reads a process's user + system CPU time (clock ticks of 10 ms: USER_HZ is 100
// on Linux).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// redisRoundTrips returns Redis round trips so far as "<HandleMessage|background> <command>".
// With -processes it scrapes the session workers' dmgrid_redis_duration_seconds_count (one
// observation per command sent alone or per pipeline), summed over workers: EVALSHA/EVAL
// are the Load and Commit scripts of the message path, the rest is the outbox relay
// (pipelines) and scans. With -split the services process reports its hook's counts.
func (ps *procStack) redisRoundTrips() map[string]int64 {
	if ps.control != "" { // -split: the services process counts them with the in-process hook
		out := map[string]int64{}
		if resp, err := http.Get(ps.control + "/rt"); err == nil {
			json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
		}
		return out
	}
	out := map[string]int64{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, ch := range ps.children {
		if ch.tier != "session" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := scrapeRedisCounts(ch.metrics + "/metrics")
			mu.Lock()
			for cmd, v := range m {
				who := "background "
				if cmd == "evalsha" || cmd == "eval" {
					who = "HandleMessage "
				}
				out[who+cmd] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func scrapeRedisCounts(url string) map[string]int64 {
	out := map[string]int64{}
	scrapeSeries(context.Background(), url, "dmgrid_redis_duration_seconds_count", func(label func(string) string, v float64) {
		out[label("cmd")] += int64(v)
	})
	return out
}

func waitTCP(ctx context.Context, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("not listening on %s after %s: %v", addr, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitHTTP(ctx context.Context, url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready after %s: %v", url, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
