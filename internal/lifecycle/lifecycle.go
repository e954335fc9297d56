// Package lifecycle runs a gRPC tier (session, notifier, inventory) the same way in every
// service: the gRPC server with OpenTelemetry instrumentation, /metrics, the tier's
// background work, and the shutdown order of STYLE.md practice 6 — readiness NOT_SERVING,
// drain in-flight RPCs (GracefulStop, bounded), then stop the background work. With
// Options.TLS the gRPC server serves TLS (and mutual TLS with a client CA); with
// Options.HealthAddr it also serves grpc.health.v1 in plaintext on a port of its own, for
// Kubernetes' gRPC probes, which do not speak TLS.
package lifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/dmgrid/dmgrid/internal/grpctls"
	"github.com/dmgrid/dmgrid/internal/telemetry"
)

// Tier is what a service hands to ServeGRPC.
type Tier interface {
	Register(*grpc.Server)            // its APIs and health
	SetServing(bool)                  // readiness
	Background(context.Context) error // consumers, relays, workers: run until the context ends
}

// Options describe the server.
type Options struct {
	Name          string // for logs ("session worker", "notifier", ...)
	Telemetry     *telemetry.Telemetry
	MetricsAddr   string // "" disables /metrics
	PProf         bool   // also serve the Go profiler on MetricsAddr (DMGRID_PPROF)
	Log           *slog.Logger
	ServerOptions []grpc.ServerOption // e.g. keepalive parameters
	DrainTimeout  time.Duration       // bound on GracefulStop (default 10s)

	// TLS is the server's transport security (DMGRID_GRPC_TLS_*); plaintext when not enabled.
	TLS grpctls.ServerConfig
	// HealthAddr (DMGRID_GRPC_HEALTH_ADDR), when set, also serves Health — and nothing else —
	// in plaintext on this address, for probes that cannot do TLS or present a client
	// certificate. HealthListener, when set, is used instead (tests).
	HealthAddr     string
	HealthListener net.Listener
	Health         healthpb.HealthServer
}

// ServeGRPC serves t on lis until ctx ends (then drains) or until the server or the
// background work fails (then stops and returns the error).
func ServeGRPC(ctx context.Context, lis net.Listener, t Tier, o Options) error {
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 10 * time.Second
	}
	hlis := o.HealthListener
	fail := func(err error) error { // before serving: release the listeners
		lis.Close()
		if hlis != nil {
			hlis.Close()
		}
		return err
	}
	if o.TLS.Log == nil {
		o.TLS.Log = o.Log // certificate reloads are logged with the service's logger
	}
	creds, err := o.TLS.Credentials()
	if err != nil {
		return fail(err)
	}
	var hs *grpc.Server
	if hlis != nil || o.HealthAddr != "" {
		if o.Health == nil {
			return fail(fmt.Errorf("%s: a health address without a health server", o.Name))
		}
		if hlis == nil {
			if hlis, err = net.Listen("tcp", o.HealthAddr); err != nil {
				return fail(fmt.Errorf("listen %s (health): %w", o.HealthAddr, err))
			}
		}
		hs = grpc.NewServer()
		healthpb.RegisterHealthServer(hs, o.Health)
	}
	tel := o.Telemetry
	opts := append([]grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tel.Tracers), otelgrpc.WithMeterProvider(tel.Meters), otelgrpc.WithPropagators(tel.Propagator))),
		// Long-lived workers serve the calls (a new goroutine only when all are busy): a
		// fresh goroutine per call grows its stack through the same deep call chain every
		// time, 4% of a session worker's CPU under load.
		grpc.NumStreamWorkers(uint32(4 * runtime.GOMAXPROCS(0)))},
		o.ServerOptions...)
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	g := grpc.NewServer(opts...)
	t.Register(g)
	if o.MetricsAddr != "" {
		go func() {
			if err := tel.ServeMetrics(ctx, o.MetricsAddr, o.PProf, o.Log); err != nil {
				o.Log.Error("metrics server", "err", err)
			}
		}()
	}
	t.SetServing(true)
	// The background work outlives ctx until the server has drained.
	bctx, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	bgDone := make(chan error, 1)
	go func() { bgDone <- t.Background(bctx) }()
	errc := make(chan error, 2)
	go func() { errc <- g.Serve(lis) }()
	attrs := []any{"grpc_addr", lis.Addr().String(), "tls", creds != nil, "client_certificates", creds != nil && o.TLS.ClientCAFile != ""}
	if hs != nil {
		// Stopped after the API server has drained, so probes see NOT_SERVING meanwhile.
		defer hs.Stop()
		go func() {
			if err := hs.Serve(hlis); err != nil {
				errc <- fmt.Errorf("health server: %w", err)
			}
		}()
		attrs = append(attrs, "health_addr", hlis.Addr().String())
	}
	o.Log.Info(o.Name+" serving", attrs...)

	var serveErr error
	select {
	case serveErr = <-errc:
		g.Stop() // the API or the health server failed: stop both (the health one by defer)
	case err := <-bgDone:
		bgDone <- err // read again below
		if err != nil {
			// Without its background work the tier cannot do its job: stop.
			g.Stop()
			<-errc
			stopBG()
			return fmt.Errorf("%s background: %w", o.Name, <-bgDone)
		}
		<-ctx.Done() // background finished cleanly early (nothing to run): serve until ctx
		serveErr = drain(g, t, o.DrainTimeout)
	case <-ctx.Done():
		serveErr = drain(g, t, o.DrainTimeout)
	}
	stopBG()
	if err := <-bgDone; err != nil && serveErr == nil {
		serveErr = fmt.Errorf("%s background: %w", o.Name, err)
	}
	return serveErr
}

func drain(g *grpc.Server, t Tier, timeout time.Duration) error {
	t.SetServing(false)
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(timeout):
		g.Stop()
	}
	return nil
}
