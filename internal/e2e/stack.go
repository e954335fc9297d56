// Package e2e composes dmgrid in-process for tests: an embedded NATS server with
// JetStream, session workers on loopback gRPC ports over a real Redis (or Redis Cluster),
// and a gateway on a loopback HTTP port, all driven by the device simulator (pkg/dmsim).
package e2e

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"

	"github.com/dmgrid/dmgrid/internal/testredis"
	"github.com/dmgrid/dmgrid/services/gateway"
	"github.com/dmgrid/dmgrid/services/session"
)

// Options shape a stack.
type Options struct {
	Workers          int  // session workers (default 2)
	Cluster          bool // Redis Cluster instead of a single Redis
	IdleTimeout      time.Duration
	MaxAttempts      int
	ServerMaxMsgSize int64
	ServerMaxObjSize int64
	DevDetailEvery   time.Duration
}

// Stack is a running dmgrid.
type Stack struct {
	URL       string // the gateway's DM endpoint
	GRPCAddrs []string
	Workers   []*session.Service
	NATS      *server.Server
	NC        *nats.Conn
	Redis     redis.UniversalClient
	Prefix    string
	Devices   devicev1.DeviceServiceClient
	Commands  commandv1.CommandServiceClient
}

// StartNATS runs an embedded nats-server with JetStream on a free loopback port.
func StartNATS(tb testing.TB) *server.Server {
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

func testLogger() *slog.Logger {
	if os.Getenv("DMGRID_TEST_LOG") != "" {
		return slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Start brings up a stack; everything stops at test cleanup.
func Start(tb testing.TB, opt Options) *Stack {
	tb.Helper()
	if opt.Workers <= 0 {
		opt.Workers = 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := testLogger()
	st := &Stack{NATS: StartNATS(tb), Prefix: testredis.Prefix(tb)}
	cfg := session.Config{
		RedisPrefix: st.Prefix, NATSURL: st.NATS.ClientURL(), EventsStream: "DMGRID_EVENTS",
		IdleTimeout: opt.IdleTimeout, MaxAttempts: opt.MaxAttempts, ChallengeLimit: 1000,
		ServerMaxMsgSize: opt.ServerMaxMsgSize, ServerMaxObjSize: opt.ServerMaxObjSize, OutboxScan: time.Second,
		DevDetailEvery: opt.DevDetailEvery,
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 3
	}
	if opt.Cluster {
		cfg.RedisClusterAddrs = testredis.Cluster(tb)
		st.Redis = redis.NewClusterClient(&redis.ClusterOptions{Addrs: cfg.RedisClusterAddrs})
	} else {
		cfg.RedisURL = testredis.URL(tb)
		o, _ := redis.ParseURL(cfg.RedisURL)
		st.Redis = redis.NewClient(o)
	}
	done := make(chan struct{}, opt.Workers+1)
	for i := 0; i < opt.Workers; i++ {
		w, err := session.New(ctx, cfg, log)
		if err != nil {
			tb.Fatalf("session worker: %v", err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		st.Workers = append(st.Workers, w)
		st.GRPCAddrs = append(st.GRPCAddrs, lis.Addr().String())
		go func() { w.Serve(ctx, lis); w.Close(); done <- struct{}{} }()
	}
	gw, err := gateway.New(gateway.Config{Path: "/dm", SessionAddr: strings.Join(st.GRPCAddrs, ","), MaxBodyBytes: 4 << 20, RequestTimeout: 20 * time.Second}, log)
	if err != nil {
		tb.Fatalf("gateway: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	st.URL = "http://" + lis.Addr().String() + "/dm"
	go func() { gw.Serve(ctx, lis); gw.Close(); done <- struct{}{} }()

	conn, err := grpc.NewClient(st.GRPCAddrs[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	st.Devices = devicev1.NewDeviceServiceClient(conn)
	st.Commands = commandv1.NewCommandServiceClient(conn)
	nc, err := nats.Connect(st.NATS.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	st.NC = nc
	tb.Cleanup(func() {
		nc.Close()
		conn.Close()
		cancel()
		for i := 0; i < opt.Workers+1; i++ {
			<-done
		}
		st.Redis.Close()
	})
	return st
}
