// Package telemetry builds each service's OpenTelemetry providers: traces exported over
// OTLP/gRPC when OTEL_EXPORTER_OTLP_ENDPOINT is set, metrics exported for Prometheus from a
// registry of the service's own (no global metrics), and the W3C trace-context propagator
// that carries traceparent in gRPC metadata and NATS headers. Providers are built in main
// and passed down; nothing here is global (STYLE.md practice 12).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Telemetry is one service's tracer and meter providers.
type Telemetry struct {
	Tracers    trace.TracerProvider
	Meters     metric.MeterProvider
	Propagator propagation.TextMapPropagator
	Registry   *prometheus.Registry
	shutdown   []func(context.Context) error
}

// Options select exporters.
type Options struct {
	Service string
	// OTLPEndpoint (OTEL_EXPORTER_OTLP_ENDPOINT, host:port) enables trace export.
	OTLPEndpoint string
	// SpanProcessor, when set, receives spans (tests use an in-memory recorder).
	SpanProcessor sdktrace.SpanProcessor
}

// New builds the providers.
func New(ctx context.Context, opt Options) (*Telemetry, error) {
	t := &Telemetry{
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		Registry:   prometheus.NewRegistry(),
	}
	t.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	res := resource.NewSchemaless(semconv.ServiceName("dmgrid-" + opt.Service))

	exp, err := otelprom.New(otelprom.WithRegisterer(t.Registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	t.Meters = mp
	t.shutdown = append(t.shutdown, mp.Shutdown)

	var tpOpts []sdktrace.TracerProviderOption
	if opt.SpanProcessor != nil {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(opt.SpanProcessor))
	}
	if opt.OTLPEndpoint != "" {
		te, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(opt.OTLPEndpoint), otlptracegrpc.WithInsecure())
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		tpOpts = append(tpOpts, sdktrace.WithBatcher(te))
	}
	if len(tpOpts) == 0 {
		t.Tracers = noop.NewTracerProvider()
	} else {
		tp := sdktrace.NewTracerProvider(append(tpOpts, sdktrace.WithResource(res))...)
		t.Tracers = tp
		t.shutdown = append(t.shutdown, tp.Shutdown)
	}
	return t, nil
}

// Nop returns providers that record nothing (tests and tools that do not care).
func Nop() *Telemetry {
	t, _ := New(context.Background(), Options{Service: "nop"})
	return t
}

// Shutdown flushes and stops the exporters.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}

// MetricsHandler serves the service's metrics in the Prometheus text format.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{})
}

// ServeMetrics serves /metrics on addr until ctx ends ("" disables it). With pprof
// (DMGRID_PPROF) it also serves the Go profiler under /debug/pprof/ (for an operator
// chasing CPU or memory; keep the metrics port private).
func (t *Telemetry) ServeMetrics(ctx context.Context, addr string, pprofOn bool, log *slog.Logger) error {
	if addr == "" {
		return nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", t.MetricsHandler())
	if pprofOn {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		log.Warn("profiler serving on the metrics address (DMGRID_PPROF)", "metrics_addr", lis.Addr().String())
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("metrics serving", "metrics_addr", lis.Addr().String())
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// HeaderCarrier adapts NATS-style headers (map[string][]string) for the propagator.
type HeaderCarrier map[string][]string

// Get returns the first value of a key.
func (h HeaderCarrier) Get(k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set sets a key.
func (h HeaderCarrier) Set(k, v string) { h[k] = []string{v} }

// Keys lists the keys.
func (h HeaderCarrier) Keys() []string {
	out := make([]string, 0, len(h))
	for k := range h {
		out = append(out, k)
	}
	return out
}

// AttrCache memoizes metric attribute options by a comparable key, so that a hot path
// records a measurement without building (sorting, hashing, allocating) an attribute set
// each time. The key must determine the attributes; at most MaxAttrCache keys are kept
// (beyond that the options are built each time).
type AttrCache[K comparable] struct {
	m sync.Map // K → metric.MeasurementOption; read without a lock on the hot paths
	n atomic.Int32
}

// MaxAttrCache bounds an AttrCache.
const MaxAttrCache = 1024

// Get returns the option for k, built from kv the first time.
func (c *AttrCache[K]) Get(k K, kv ...attribute.KeyValue) metric.MeasurementOption {
	if o, ok := c.m.Load(k); ok {
		return o.(metric.MeasurementOption)
	}
	o := metric.WithAttributeSet(attribute.NewSet(kv...))
	if c.n.Load() < MaxAttrCache {
		if prev, loaded := c.m.LoadOrStore(k, o); loaded {
			return prev.(metric.MeasurementOption)
		}
		c.n.Add(1)
	}
	return o
}
