// Package e2e composes dmgrid in-process for tests: an embedded NATS server with
// JetStream, session workers on loopback gRPC ports over a real Redis (or Redis Cluster),
// and a gateway on a loopback HTTP port, all driven by the device simulator (pkg/dmsim).
//
// Programs that are not tests (tools/loadtest) run the same stack with an Env in place of
// the *testing.T and a Redis of their own (Options.RedisURL).
package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"

	"github.com/dmgrid/dmgrid/internal/grpctls"
	"github.com/dmgrid/dmgrid/internal/grpctls/grpctlstest"
	"github.com/dmgrid/dmgrid/internal/telemetry"
	"github.com/dmgrid/dmgrid/internal/testredis"
	"github.com/dmgrid/dmgrid/services/gateway"
	"github.com/dmgrid/dmgrid/services/session"
)

// TB is what the stack needs from its caller. *testing.T and *testing.B satisfy it; so does
// *Env, for programs that run a stack outside `go test`.
type TB interface {
	Helper()
	Cleanup(func())
	TempDir() string
	Name() string
	Logf(format string, args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// Options shape a stack.
type Options struct {
	Workers          int  // session workers (default 2)
	Cluster          bool // Redis Cluster instead of a single Redis
	IdleTimeout      time.Duration
	MaxAttempts      int
	ServerMaxMsgSize int64
	ServerMaxObjSize int64
	DevDetailEvery   time.Duration

	// RedisURL uses this Redis instead of the test binary's (required outside tests unless
	// Cluster is set, which is test-only).
	RedisURL string
	// Prefix is the Redis key prefix; default a fresh one per stack.
	Prefix string
	// LameDuck is the gateway's lame-duck period on stop (default 0: shut down at once).
	LameDuck time.Duration
	// GatewayTelemetry, when set, is the gateway's telemetry (e.g. to read its metrics).
	GatewayTelemetry *telemetry.Telemetry
	// RedisHooks are added to every session worker's Redis client, restarted workers
	// included (e.g. to count round trips).
	RedisHooks []redis.Hook
	// Logger receives the services' logs (default: discarded unless DMGRID_TEST_LOG is set).
	Logger *slog.Logger
	// OutboxScan is how often the workers look for left-behind outboxes (default 1s, so
	// tests see a stopped worker's events soon; production's default is 10s).
	OutboxScan time.Duration
	// OutboxLinger is the relay's batch gathering time (session.Config.OutboxLinger).
	OutboxLinger time.Duration
	// NATSURL uses this NATS server (with JetStream) instead of an embedded one; Stack.NATS
	// is then nil.
	NATSURL string
	// TLS runs every gRPC link of the stack over mutual TLS, with certificates made for the
	// stack (Stack.TLS): the workers serve TLS and require client certificates; the gateway
	// and the stack's API clients verify them and present one.
	TLS bool
}

// StackTLS is the stack's PKI (Options.TLS): one CA, the workers' server certificate (for
// 127.0.0.1, ::1 and localhost) and a client certificate that CA signed.
type StackTLS struct {
	CA                    *grpctlstest.CA
	ServerCert, ServerKey string
	ClientCert, ClientKey string
}

// Server is the workers' server configuration (mutual TLS).
func (t *StackTLS) Server() grpctls.ServerConfig {
	return grpctls.ServerConfig{CertFile: t.ServerCert, KeyFile: t.ServerKey, ClientCAFile: t.CA.CAFile}
}

// Client is a client configuration that the workers accept.
func (t *StackTLS) Client() grpctls.ClientConfig {
	return grpctls.ClientConfig{CAFile: t.CA.CAFile, CertFile: t.ClientCert, KeyFile: t.ClientKey}
}

// Stack is a running dmgrid.
//
// Workers[i] and Gateway are replaced by RestartWorker/StartWorker and
// RestartGateway/StartGateway; read them from the goroutine that restarts.
type Stack struct {
	URL       string // the gateway's DM endpoint
	GRPCAddrs []string
	Workers   []*session.Service
	Gateway   *gateway.Gateway
	NATS      *server.Server // nil with Options.NATSURL
	NC        *nats.Conn
	Redis     redis.UniversalClient
	Prefix    string
	Devices   devicev1.DeviceServiceClient
	Commands  commandv1.CommandServiceClient
	TLS       *StackTLS // Options.TLS; nil otherwise

	tb      TB
	opt     Options
	log     *slog.Logger
	cfg     session.Config
	gwCfg   gateway.Config
	gwAddr  string
	mu      sync.Mutex
	workers []*proc // by index, nil while stopped
	gw      *proc
}

// proc is one running server: cancel starts its graceful stop, done closes when it is over.
type proc struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (p *proc) stop() error {
	p.cancel()
	<-p.done
	return p.err
}

// StartNATS runs an embedded nats-server with JetStream on a free loopback port.
func StartNATS(tb TB) *server.Server {
	tb.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: tb.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		tb.Fatalf("nats-server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats-server did not start")
	}
	tb.Cleanup(ns.Shutdown)
	return ns
}

// JetStream connects to ns (from StartNATS) and returns a JetStream client of it; the
// connection closes when the test ends.
func JetStream(tb TB, ns *server.Server) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		tb.Fatalf("connect to nats-server: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	return js
}

func testLogger() *slog.Logger {
	if os.Getenv("DMGRID_TEST_LOG") != "" {
		return slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func randomPrefix(name string) string {
	b := make([]byte, 4)
	rand.Read(b)
	name = strings.NewReplacer("/", "_", " ", "_", "{", "", "}", "").Replace(name)
	return "t:" + name + ":" + hex.EncodeToString(b)
}

// Start brings up a stack; everything stops at test cleanup.
func Start(tb TB, opt Options) *Stack {
	tb.Helper()
	if opt.Workers <= 0 {
		opt.Workers = 2
	}
	log := opt.Logger
	if log == nil {
		log = testLogger()
	}
	t, isTest := tb.(testing.TB)
	prefix := opt.Prefix
	if prefix == "" {
		if isTest {
			prefix = testredis.Prefix(t)
		} else {
			prefix = randomPrefix(tb.Name())
		}
	}
	st := &Stack{Prefix: prefix, tb: tb, opt: opt, log: log}
	natsURL := opt.NATSURL
	if natsURL == "" {
		st.NATS = StartNATS(tb)
		natsURL = st.NATS.ClientURL()
	}
	cfg := session.Config{
		RedisPrefix: st.Prefix, NATSURL: natsURL, EventsStream: "DMGRID_EVENTS",
		IdleTimeout: opt.IdleTimeout, MaxAttempts: opt.MaxAttempts, ChallengeLimit: 1000,
		ServerMaxMsgSize: opt.ServerMaxMsgSize, ServerMaxObjSize: opt.ServerMaxObjSize, OutboxScan: opt.OutboxScan, OutboxLinger: opt.OutboxLinger,
		DevDetailEvery: opt.DevDetailEvery,
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.OutboxScan == 0 {
		cfg.OutboxScan = time.Second
	}
	switch {
	case opt.Cluster:
		if !isTest {
			tb.Fatal("e2e: Options.Cluster needs a *testing.T")
		}
		cfg.RedisClusterAddrs = testredis.Cluster(t)
		st.Redis = redis.NewClusterClient(&redis.ClusterOptions{Addrs: cfg.RedisClusterAddrs})
	default:
		cfg.RedisURL = opt.RedisURL
		if cfg.RedisURL == "" {
			if !isTest {
				tb.Fatal("e2e: Options.RedisURL is required outside tests")
			}
			cfg.RedisURL = testredis.URL(t)
		}
		o, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			tb.Fatalf("redis url: %v", err)
		}
		st.Redis = redis.NewClient(o)
	}
	var clientTLS grpctls.ClientConfig
	if opt.TLS {
		ca := grpctlstest.NewCA(tb, "e2e")
		st.TLS = &StackTLS{CA: ca}
		st.TLS.ServerCert, st.TLS.ServerKey = ca.Server(tb, "session-worker")
		st.TLS.ClientCert, st.TLS.ClientKey = ca.Client(tb, "e2e-client")
		cfg.GRPCTLS, clientTLS = st.TLS.Server(), st.TLS.Client()
	}
	st.cfg = cfg
	// Registered before the servers' own cleanups so that it runs after them (LIFO): the
	// servers stop first, then the clients and the Redis client close.
	tb.Cleanup(func() {
		st.stopAll()
		st.Redis.Close()
	})
	st.workers = make([]*proc, opt.Workers)
	st.Workers = make([]*session.Service, opt.Workers)
	st.GRPCAddrs = make([]string, opt.Workers)
	for i := 0; i < opt.Workers; i++ {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		st.GRPCAddrs[i] = lis.Addr().String()
		if err := st.startWorker(i, lis); err != nil {
			tb.Fatalf("session worker: %v", err)
		}
	}
	st.gwCfg = gateway.Config{Path: "/dm", SessionAddr: strings.Join(st.GRPCAddrs, ","), MaxBodyBytes: 4 << 20,
		RequestTimeout: 20 * time.Second, LameDuck: opt.LameDuck, Telemetry: opt.GatewayTelemetry, SessionTLS: clientTLS}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	st.gwAddr = lis.Addr().String()
	st.URL = "http://" + st.gwAddr + "/dm"
	if err := st.startGateway(lis); err != nil {
		tb.Fatalf("gateway: %v", err)
	}

	// The API clients balance over every worker, so they keep working while one restarts.
	conn, err := DialWorkersTLS(st.GRPCAddrs, clientTLS)
	if err != nil {
		tb.Fatal(err)
	}
	st.Devices = devicev1.NewDeviceServiceClient(conn)
	st.Commands = commandv1.NewCommandServiceClient(conn)
	nc, err := nats.Connect(natsURL)
	if err != nil {
		tb.Fatal(err)
	}
	st.NC = nc
	tb.Cleanup(func() {
		nc.Close()
		conn.Close()
	})
	return st
}

// DialWorkers connects to the session workers' APIs in plaintext, balanced round-robin over
// all of them.
func DialWorkers(addrs []string) (*grpc.ClientConn, error) {
	return DialWorkersTLS(addrs, grpctls.ClientConfig{})
}

// DialWorkersTLS is DialWorkers with the client TLS c (plaintext when c is not enabled).
func DialWorkersTLS(addrs []string, c grpctls.ClientConfig) (*grpc.ClientConn, error) {
	return c.Dial(strings.Join(addrs, ","), grpctls.SessionClientVars)
}

// listenAgain listens on addr, retrying briefly while the previous listener's port is not
// free yet.
func listenAgain(addr string) (net.Listener, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		lis, err := net.Listen("tcp", addr)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return lis, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (st *Stack) startWorker(i int, lis net.Listener) error {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := session.New(ctx, st.cfg, st.log)
	if err != nil {
		cancel()
		lis.Close()
		return err
	}
	for _, h := range st.opt.RedisHooks {
		w.Sessions.St.Client().AddHook(h)
	}
	p := &proc{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = w.Serve(ctx, lis)
		w.Close()
	}()
	st.mu.Lock()
	st.Workers[i], st.workers[i] = w, p
	st.mu.Unlock()
	return nil
}

func (st *Stack) startGateway(lis net.Listener) error {
	gw, err := gateway.New(st.gwCfg, st.log)
	if err != nil {
		lis.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = gw.Serve(ctx, lis)
		gw.Close()
	}()
	st.mu.Lock()
	st.Gateway, st.gw = gw, p
	st.mu.Unlock()
	return nil
}

// StopWorker stops session worker i gracefully, as on SIGTERM: readiness goes NOT_SERVING,
// in-flight RPCs finish (GracefulStop), its outbox relay stops, NATS drains, Redis closes.
// It returns when the worker is gone. Stopping a stopped worker does nothing.
func (st *Stack) StopWorker(i int) error {
	st.mu.Lock()
	p := st.workers[i]
	st.workers[i] = nil
	st.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.stop()
}

// StartWorker starts a new session worker i on the address the stopped one had.
func (st *Stack) StartWorker(i int) error {
	st.mu.Lock()
	running := st.workers[i] != nil
	st.mu.Unlock()
	if running {
		return fmt.Errorf("e2e: worker %d is running", i)
	}
	lis, err := listenAgain(st.GRPCAddrs[i])
	if err != nil {
		return fmt.Errorf("e2e: listen again on %s: %w", st.GRPCAddrs[i], err)
	}
	return st.startWorker(i, lis)
}

// RestartWorker stops worker i gracefully and starts a new one on the same address.
func (st *Stack) RestartWorker(i int) error {
	if err := st.StopWorker(i); err != nil {
		return fmt.Errorf("e2e: stop worker %d: %w", i, err)
	}
	return st.StartWorker(i)
}

// StopGateway stops the gateway gracefully, as on SIGTERM: /readyz fails for
// Options.LameDuck while requests are still served, then the HTTP server shuts down (no new
// connections; in-flight requests finish) and its gRPC connection closes.
func (st *Stack) StopGateway() error {
	st.mu.Lock()
	p := st.gw
	st.gw = nil
	st.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.stop()
}

// StartGateway starts a new gateway on the stopped one's address (same URL).
func (st *Stack) StartGateway() error {
	st.mu.Lock()
	running := st.gw != nil
	st.mu.Unlock()
	if running {
		return errors.New("e2e: the gateway is running")
	}
	lis, err := listenAgain(st.gwAddr)
	if err != nil {
		return fmt.Errorf("e2e: listen again on %s: %w", st.gwAddr, err)
	}
	return st.startGateway(lis)
}

// RestartGateway stops the gateway gracefully and starts a new one on the same address.
func (st *Stack) RestartGateway() error {
	if err := st.StopGateway(); err != nil {
		return fmt.Errorf("e2e: stop gateway: %w", err)
	}
	return st.StartGateway()
}

// stopAll stops every running server at once (cleanup).
func (st *Stack) stopAll() {
	st.mu.Lock()
	var ps []*proc
	if st.gw != nil {
		ps = append(ps, st.gw)
	}
	for _, p := range st.workers {
		if p != nil {
			ps = append(ps, p)
		}
	}
	st.gw, st.workers = nil, make([]*proc, len(st.workers))
	st.mu.Unlock()
	for _, p := range ps {
		p.cancel()
	}
	for _, p := range ps {
		<-p.done
	}
}

// Env stands in for a *testing.T when a program (not a test) runs a stack: Cleanup
// functions run at Close in reverse order, TempDir directories are removed at Close, and
// Fatal/Fatalf print, run the cleanups and exit with status 1.
type Env struct {
	name string
	logw io.Writer // Logf output; nil discards

	mu       sync.Mutex
	cleanups []func()
}

// NewEnv returns an Env; logs (Logf) go to logw when not nil.
func NewEnv(name string, logw io.Writer) *Env { return &Env{name: name, logw: logw} }

// Helper does nothing.
func (e *Env) Helper() {}

// Name returns the name given to NewEnv.
func (e *Env) Name() string { return e.name }

// Cleanup registers f to run at Close.
func (e *Env) Cleanup(f func()) {
	e.mu.Lock()
	e.cleanups = append(e.cleanups, f)
	e.mu.Unlock()
}

// TempDir creates a directory that is removed at Close.
func (e *Env) TempDir() string {
	d, err := os.MkdirTemp("", "dmgrid-"+strings.NewReplacer("/", "_", " ", "_").Replace(e.name)+"-")
	if err != nil {
		e.Fatalf("temp dir: %v", err)
	}
	e.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Logf writes a line to the log writer.
func (e *Env) Logf(format string, args ...any) {
	if e.logw != nil {
		fmt.Fprintf(e.logw, format+"\n", args...)
	}
}

// Fatal prints args, runs the cleanups and exits 1.
func (e *Env) Fatal(args ...any) { e.die(fmt.Sprint(args...)) }

// Fatalf prints, runs the cleanups and exits 1.
func (e *Env) Fatalf(format string, args ...any) { e.die(fmt.Sprintf(format, args...)) }

func (e *Env) die(msg string) {
	fmt.Fprintf(os.Stderr, "%s: %s\n", e.name, msg)
	e.Close()
	os.Exit(1)
}

// Close runs the cleanups, last registered first.
func (e *Env) Close() {
	for {
		e.mu.Lock()
		n := len(e.cleanups)
		if n == 0 {
			e.mu.Unlock()
			return
		}
		f := e.cleanups[n-1]
		e.cleanups = e.cleanups[:n-1]
		e.mu.Unlock()
		f()
	}
}
