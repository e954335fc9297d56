// Package lifecycle runs a gRPC tier (session, notifier, inventory) the same way in every
// service: the gRPC server with OpenTelemetry instrumentation, /metrics, the tier's
// background work, and the shutdown order of STYLE.md practice 6 — readiness NOT_SERVING,
// drain in-flight RPCs (GracefulStop, bounded), then stop the background work.
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
}

// ServeGRPC serves t on lis until ctx ends (then drains) or until the server or the
// background work fails (then stops and returns the error).
func ServeGRPC(ctx context.Context, lis net.Listener, t Tier, o Options) error {
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 10 * time.Second
	}
	tel := o.Telemetry
	opts := append([]grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tel.Tracers), otelgrpc.WithMeterProvider(tel.Meters), otelgrpc.WithPropagators(tel.Propagator))),
		// Long-lived workers serve the calls (a new goroutine only when all are busy): a
		// fresh goroutine per call grows its stack through the same deep call chain every
		// time, 4% of a session worker's CPU under load.
		grpc.NumStreamWorkers(uint32(4 * runtime.GOMAXPROCS(0)))},
		o.ServerOptions...)
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
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	o.Log.Info(o.Name+" serving", "grpc_addr", lis.Addr().String())

	var serveErr error
	select {
	case serveErr = <-errc:
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
