package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dmgrid/dmgrid/internal/e2e"
	"github.com/dmgrid/dmgrid/internal/telemetry"
)

// serveInfo is what the services process (-serve) prints on its first stdout line.
type serveInfo struct {
	URL     string   `json:"url"`     // gateway DM URL
	GRPC    []string `json:"grpc"`    // session workers
	Echo    string   `json:"echo"`    // the bare echo handler (the ceiling)
	Control string   `json:"control"` // /rt (Redis round trips), /gc, /debug/pprof/, /metrics (the gateway's)
}

// startServices starts the gateway and c.workers session workers in this process (the
// internal/e2e stack: the binaries' code, production's outbox scan interval 10 s), on
// natsURL or an embedded nats-server when it is empty, with the gateway's telemetry
// returned so that its metrics can be served.
func startServices(env *e2e.Env, c config, redisURL, natsURL string, hook *rtHook, log *slog.Logger) (*e2e.Stack, *telemetry.Telemetry, error) {
	gwTel, err := telemetry.New(context.Background(), telemetry.Options{Service: "dmgrid-gateway"})
	if err != nil {
		return nil, nil, err
	}
	es := e2e.Start(env, e2e.Options{Workers: c.workers, RedisURL: redisURL, NATSURL: natsURL, Prefix: "lt", RedisHooks: []redis.Hook{hook}, Logger: log,
		OutboxScan: 10 * time.Second, OutboxLinger: c.outboxLinger, GatewayTelemetry: gwTel})
	return es, gwTel, nil
}

// serveHTTP serves h on a free loopback port; it returns the base URL and the stop.
func serveHTTP(h http.Handler) (string, func(), error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second, WriteTimeout: 60 * time.Second}
	go srv.Serve(lis)
	return "http://" + lis.Addr().String(), func() { srv.Close() }, nil
}

// serve is the services process of -split: the gateway and c.workers session workers in
// one process (as without -split), using the nats-server process the parent started, plus
// the echo handler, until SIGTERM or the end of stdin.
func serve(c config) int {
	logw, log := loggers(c.verbose)
	env := e2e.NewEnv("loadtest-services", logw)
	defer env.Close()
	hook := newRTHook()
	es, gwTel, err := startServices(env, c, c.serveRedis, c.serveNATS, hook, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest -serve:", err)
		return 1
	}
	listen := func(h http.Handler) (string, error) {
		u, stop, err := serveHTTP(h)
		if err == nil {
			env.Cleanup(stop)
		}
		return u, err
	}
	echo, err := listen(http.HandlerFunc(echoHandler))
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest -serve:", err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/rt", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(hook.snap().byKind) })
	mux.HandleFunc("/gc", func(w http.ResponseWriter, r *http.Request) {
		gc, total := gcCPU()
		json.NewEncoder(w).Encode([2]float64{gc, total})
	})
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.Handle("/metrics", gwTel.MetricsHandler()) // the gateway's own metrics
	control, err := listen(mux)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest -serve:", err)
		return 1
	}
	b, _ := json.Marshal(serveInfo{URL: es.URL, GRPC: es.GRPCAddrs, Echo: echo + "/dm", Control: control})
	fmt.Println(string(b))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { io.Copy(io.Discard, os.Stdin); stop() }() // the parent went away
	<-ctx.Done()
	return 0
}

// startSplit starts a nats-server process (built from the module this checkout uses) and
// the services in a child process (this program with -serve), and connects to them: the
// load generator's heap and goroutines, and NATS's, no longer share the services' runtime,
// as on separate machines.
func startSplit(ctx context.Context, c config, redisURL string, logw io.Writer) (*procStack, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ps, natsURL, err := startNATSProcess(ctx, logw)
	if err != nil {
		return nil, err
	}
	args := []string{"-serve", "-serve-redis", redisURL, "-serve-nats", natsURL, "-workers", strconv.Itoa(c.workers), "-outbox-linger", c.outboxLinger.String()}
	if c.verbose {
		args = append(args, "-v")
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	if logw == nil {
		cmd.Stderr = io.Discard
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		ps.stop() // the nats-server started above
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		ps.stop()
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		ps.stop()
		return nil, fmt.Errorf("start the services process: %w", err)
	}
	ch := &child{name: "services", tier: "services", cmd: cmd, done: make(chan struct{})}
	ps.children = append(ps.children, ch)
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, out)
	}()
	go func() { cmd.Wait(); stdin.Close(); close(ch.done) }()
	var info serveInfo
	select {
	case l, ok := <-lines:
		if !ok || json.Unmarshal([]byte(l), &info) != nil || info.URL == "" {
			ps.stop()
			return nil, fmt.Errorf("the services process did not start (first line %q)", l)
		}
	case <-time.After(60 * time.Second):
		ps.stop()
		return nil, fmt.Errorf("the services process did not start within 60s")
	case <-ctx.Done():
		ps.stop()
		return nil, ctx.Err()
	}
	ch.metrics = info.Control
	ps.control, ps.echoURL = info.Control, info.Echo
	if ps.conn, ps.target, err = dialTarget(info.URL, "lt", info.GRPC); err != nil {
		ps.stop()
		return nil, err
	}
	return ps, nil
}

// servicesGC returns the services process's GC and total CPU seconds (-split).
func (ps *procStack) servicesGC() (gc, total float64) {
	if ps.control == "" {
		return 0, 0
	}
	resp, err := http.Get(ps.control + "/gc")
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	var v [2]float64
	json.NewDecoder(resp.Body).Decode(&v)
	return v[0], v[1]
}
