// Command devstack runs all of dmgrid in one process for development (`make run`): a
// session worker and a gateway, with an embedded NATS server (JetStream in a temporary
// directory) and an embedded Redis-protocol server, unless --redis-url / --nats-url (or
// DMGRID_REDIS_URL / DMGRID_NATS_URL) point at real ones. It creates a demo device with a
// queued command and prints how to run a session against it. Ctrl-C stops everything.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/nats-io/nats-server/v2/server"
	"google.golang.org/grpc"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"
	inventoryv1 "github.com/dmgrid/dmgrid/proto/dmgrid/inventory/v1"
	notifierv1 "github.com/dmgrid/dmgrid/proto/dmgrid/notifier/v1"

	"github.com/dmgrid/dmgrid/internal/gctune"
	"github.com/dmgrid/dmgrid/services/gateway"
	"github.com/dmgrid/dmgrid/services/inventory"
	"github.com/dmgrid/dmgrid/services/notifier"
	"github.com/dmgrid/dmgrid/services/session"
)

const (
	demoDevice = "IMEI:490154203237518"
	demoName   = "demo"
	demoSecret = "demo-secret"
)

func main() {
	gctune.Apply() // the services' garbage-collector settings
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("devstack", flag.ContinueOnError)
	httpAddr := fs.String("http-addr", env("DMGRID_HTTP_ADDR", "127.0.0.1:8080"), "gateway listen address (env DMGRID_HTTP_ADDR)")
	grpcAddr := fs.String("grpc-addr", env("DMGRID_GRPC_ADDR", "127.0.0.1:9090"), "gRPC listen address for all APIs (env DMGRID_GRPC_ADDR)")
	redisURL := fs.String("redis-url", env("DMGRID_REDIS_URL", ""), "use this Redis instead of the embedded one (env DMGRID_REDIS_URL)")
	natsURL := fs.String("nats-url", env("DMGRID_NATS_URL", ""), "use this NATS instead of the embedded one (env DMGRID_NATS_URL)")
	verbose := fs.Bool("v", false, "log every service's JSON logs to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if *redisURL == "" {
		m := miniredis.NewMiniRedis()
		if err := m.Start(); err != nil {
			return fmt.Errorf("embedded redis: %w", err)
		}
		defer m.Close()
		*redisURL = "redis://" + m.Addr()
		fmt.Println("redis:    embedded Redis-protocol server (miniredis) at", m.Addr(), "— state is lost on exit")
	} else {
		fmt.Println("redis:   ", *redisURL)
	}
	if *natsURL == "" {
		dir, err := os.MkdirTemp("", "dmgrid-nats-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
		if err != nil {
			return fmt.Errorf("embedded nats: %w", err)
		}
		go ns.Start()
		if !ns.ReadyForConnections(10 * time.Second) {
			return errors.New("embedded nats did not start")
		}
		defer ns.Shutdown()
		*natsURL = ns.ClientURL()
		fmt.Println("nats:     embedded nats-server with JetStream at", *natsURL)
	} else {
		fmt.Println("nats:    ", *natsURL)
	}

	scfg := session.Config{GRPCAddr: *grpcAddr, RedisURL: *redisURL, RedisPrefix: "dmgrid", NATSURL: *natsURL,
		EventsStream: "DMGRID_EVENTS", IdleTimeout: 5 * time.Minute, MaxAttempts: 3, ChallengeLimit: 30,
		ServerMaxMsgSize: 1 << 20, ServerMaxObjSize: 4 << 20, OutboxScan: 10 * time.Second, DevDetailEvery: 24 * time.Hour}
	svc, err := session.New(ctx, scfg, log.With("service", "session"))
	if err != nil {
		return err
	}
	defer svc.Close()
	glis, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *grpcAddr, err)
	}
	hlis, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *httpAddr, err)
	}
	gw, err := gateway.New(gateway.Config{Path: "/dm", SessionAddr: glis.Addr().String(), MaxBodyBytes: 1 << 20, RequestTimeout: 10 * time.Second, LameDuck: 0}, log.With("service", "gateway"))
	if err != nil {
		return err
	}
	defer gw.Close()
	// The notifier (Package 0 through the "log" provider: the SMS it would send is logged)
	// on the same gRPC server as the session APIs.
	ncfg, err := notifier.ConfigFromEnv(func(k string) (string, bool) {
		v, ok := map[string]string{"DMGRID_REDIS_URL": *redisURL, "DMGRID_NATS_URL": *natsURL,
			"DMGRID_SESSION_ADDR": glis.Addr().String(), "DMGRID_NOTIFIER_ROUTES": "default=log"}[k]
		return v, ok
	})
	if err != nil {
		return fmt.Errorf("notifier config: %w", err)
	}
	ntf, err := notifier.New(ctx, ncfg, log.With("service", "notifier"))
	if err != nil {
		return err
	}
	defer ntf.Close()

	// The inventory, fed by the same event stream.
	icfg, err := inventory.ConfigFromEnv(func(k string) (string, bool) {
		v, ok := map[string]string{"DMGRID_REDIS_URL": *redisURL, "DMGRID_NATS_URL": *natsURL, "DMGRID_REDIS_PREFIX": "dmgrid-inv"}[k]
		return v, ok
	})
	if err != nil {
		return fmt.Errorf("inventory config: %w", err)
	}
	inv, err := inventory.New(ctx, icfg, log.With("service", "inventory"))
	if err != nil {
		return err
	}
	defer inv.Close()

	g := grpc.NewServer()
	svc.Register(g) // with the health service for the whole process
	notifierv1.RegisterNotifierServiceServer(g, ntf.API)
	inventoryv1.RegisterInventoryServiceServer(g, inv.Inventory)
	svc.SetServing(true)
	ntf.SetServing(true)
	errc := make(chan error, 5)
	go func() { errc <- g.Serve(glis) }()
	go func() { errc <- svc.Background(ctx) }()
	go func() { errc <- ntf.Background(ctx) }()
	go func() { errc <- inv.Background(ctx) }()
	go func() { errc <- gw.Serve(ctx, hlis) }()
	defer g.GracefulStop()

	if err := demo(ctx, svc); err != nil {
		return err
	}
	url := "http://" + hlis.Addr().String() + "/dm"
	fmt.Printf(`
dmgrid is running.
  gateway (devices POST SyncML here): %s
  gRPC (DeviceService, CommandService, NotifierService, InventoryService, SessionService): %s

A demo device %s (MD5 auth, name %q, secret %q) has a queued Get of ./DevDetail/FwV.
Run a session with the device simulator, then look at the result:

  go run ./tools/dmsim run --url %s --device-id %s --auth md5 --name %s --secret %s
  go run ./tools/dmctl command list %s --addr %s

Queue more:  go run ./tools/dmctl command enqueue %s get ./DevInfo/Mod --addr %s
Notify it:   go run ./tools/dmctl notify %s --addr %s   (the "log" provider logs the SMS; run with -v)
Inventory:   go run ./tools/dmctl inventory get %s --addr %s
Ctrl-C stops everything.
`, url, glis.Addr(), demoDevice, demoName, demoSecret, url, demoDevice, demoName, demoSecret, demoDevice, glis.Addr(), demoDevice, glis.Addr(), demoDevice, glis.Addr(), demoDevice, glis.Addr())

	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil {
			return err
		}
	}
	fmt.Println("\nstopping")
	return nil
}

// demo creates the demo device (if it is not there yet) and queues a command for it.
func demo(ctx context.Context, svc *session.Service) error {
	_, err := svc.Devices.CreateDevice(ctx, &devicev1.CreateDeviceRequest{RequestId: "devstack-demo", Device: &devicev1.Device{
		DeviceId:   demoDevice,
		ClientAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: demoName, Secret: demoSecret},
		ServerAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: "dmgrid-dev", Secret: "dev-server-secret"},
		Msisdn:     "+15550100001",
		Labels:     map[string]string{"env": "dev"},
	}})
	if err != nil {
		return fmt.Errorf("create demo device: %w", err)
	}
	_, err = svc.Commands.EnqueueCommands(ctx, &commandv1.EnqueueCommandsRequest{DeviceId: demoDevice, RequestId: "devstack-demo",
		Operations: []*commandv1.Operation{{Type: commandv1.OperationType_OPERATION_TYPE_GET, TargetUri: "./DevDetail/FwV"}}})
	if err != nil {
		return fmt.Errorf("queue demo command: %w", err)
	}
	return nil
}
