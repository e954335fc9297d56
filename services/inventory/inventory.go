// Package inventory is the inventory tier: a durable JetStream consumer of the dmgrid
// events stream that keeps every device's facts (DevInfo, DevDetail, sessions, labels,
// last-known tree values) in Redis, idempotently, and the public
// dmgrid.inventory.v1.InventoryService that answers queries over them. Replicas share the
// durable consumer (JetStream spreads the events over them) and the Redis.
package inventory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	inventoryv1 "github.com/dmgrid/dmgrid/proto/dmgrid/inventory/v1"

	"github.com/dmgrid/dmgrid/pkg/events"
	"github.com/dmgrid/dmgrid/services/inventory/internal/api"
	"github.com/dmgrid/dmgrid/services/inventory/internal/ingest"
	"github.com/dmgrid/dmgrid/services/inventory/internal/store"

	"github.com/dmgrid/dmgrid/internal/telemetry"

	"github.com/dmgrid/dmgrid/internal/envflag"
	"github.com/dmgrid/dmgrid/internal/grpctls"

	"github.com/dmgrid/dmgrid/internal/lifecycle"
)

// Config is the inventory service's configuration, read from the environment.
type Config struct {
	GRPCAddr          string        // DMGRID_GRPC_ADDR, default ":9091"
	RedisURL          string        // DMGRID_REDIS_URL (required; a single Redis, see internal/store)
	RedisPrefix       string        // DMGRID_REDIS_PREFIX, default "dmgrid"
	NATSURL           string        // DMGRID_NATS_URL (required)
	EventsStream      string        // DMGRID_EVENTS_STREAM, default DMGRID_EVENTS
	Consumer          string        // DMGRID_INVENTORY_CONSUMER, durable consumer name, default "inventory"
	DeadLetterSubject string        // DMGRID_INVENTORY_DEADLETTER_SUBJECT, default "dmgrid.deadletter.inventory"
	DeadLetterStream  string        // DMGRID_DEADLETTER_STREAM, default DMGRID_DEADLETTER; "none": plain publish
	MaxDeliver        int           // DMGRID_INVENTORY_MAX_DELIVER, attempts before dead-lettering, default 5
	MaxAckPending     int           // DMGRID_INVENTORY_MAX_ACK_PENDING, events in flight, default 4096
	AckWait           time.Duration // DMGRID_INVENTORY_ACK_WAIT, redelivery after a crash, default 30s
	Workers           int           // DMGRID_INVENTORY_WORKERS, parallel appliers, default 4
	Batch             int           // DMGRID_INVENTORY_BATCH, events per Redis round trip, default 256
	DedupeWindow      time.Duration // DMGRID_INVENTORY_DEDUPE_WINDOW, how long event ids are remembered, default 24h
	MetricsAddr       string        // DMGRID_METRICS_ADDR, default ":9102"; "" disables /metrics
	PProf             bool          // DMGRID_PPROF: also serve the Go profiler on MetricsAddr
	OTLPEndpoint      string        // OTEL_EXPORTER_OTLP_ENDPOINT (host:port): export traces over OTLP/gRPC

	// GRPCTLS is the gRPC server's TLS (DMGRID_GRPC_TLS_CERT, DMGRID_GRPC_TLS_KEY; mutual TLS
	// with DMGRID_GRPC_TLS_CLIENT_CA); plaintext when unset.
	GRPCTLS grpctls.ServerConfig
	// HealthAddr (DMGRID_GRPC_HEALTH_ADDR) also serves gRPC health, alone and in plaintext,
	// on this address: Kubernetes' gRPC probes cannot do TLS. Unset: none.
	HealthAddr string

	// Telemetry, when set (tests, the dev stack), is used instead of building providers.
	Telemetry *telemetry.Telemetry
}

// ConfigFromEnv reads the configuration through lookup (os.LookupEnv in main, a map in
// tests) and validates it.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	r := envflag.NewReader(lookup)
	get, dur, num := r.String, r.Duration, r.Int
	c := Config{
		GRPCAddr:          get("DMGRID_GRPC_ADDR", ":9091"),
		MetricsAddr:       r.StringOrEmpty("DMGRID_METRICS_ADDR", ":9102"),
		PProf:             r.Bool("DMGRID_PPROF", "false"),
		OTLPEndpoint:      get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
		RedisURL:          get("DMGRID_REDIS_URL", ""),
		RedisPrefix:       get("DMGRID_REDIS_PREFIX", "dmgrid"),
		NATSURL:           get("DMGRID_NATS_URL", ""),
		EventsStream:      get("DMGRID_EVENTS_STREAM", events.DefaultStream),
		Consumer:          get("DMGRID_INVENTORY_CONSUMER", "inventory"),
		DeadLetterSubject: get("DMGRID_INVENTORY_DEADLETTER_SUBJECT", "dmgrid.deadletter.inventory"),
		DeadLetterStream:  get("DMGRID_DEADLETTER_STREAM", "DMGRID_DEADLETTER"),
		MaxDeliver:        num("DMGRID_INVENTORY_MAX_DELIVER", "5"),
		MaxAckPending:     num("DMGRID_INVENTORY_MAX_ACK_PENDING", "4096"),
		AckWait:           dur("DMGRID_INVENTORY_ACK_WAIT", "30s"),
		Workers:           num("DMGRID_INVENTORY_WORKERS", "4"),
		Batch:             num("DMGRID_INVENTORY_BATCH", "256"),
		DedupeWindow:      dur("DMGRID_INVENTORY_DEDUPE_WINDOW", "24h"),
	}
	if c.DeadLetterStream == "none" {
		c.DeadLetterStream = ""
	}
	c.GRPCTLS = grpctls.ReadServer(r)
	c.HealthAddr = get("DMGRID_GRPC_HEALTH_ADDR", "")
	if err := r.Err(); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.RedisURL == "" {
		errs = append(errs, errors.New("DMGRID_REDIS_URL is required (the inventory needs a single Redis, not a cluster)"))
	} else if _, err := redis.ParseURL(c.RedisURL); err != nil {
		errs = append(errs, fmt.Errorf("DMGRID_REDIS_URL: %w", err))
	}
	if c.NATSURL == "" {
		errs = append(errs, errors.New("DMGRID_NATS_URL is required: the inventory is fed by the events stream"))
	}
	if c.RedisPrefix == "" || strings.ContainsAny(c.RedisPrefix, "{} ") {
		errs = append(errs, errors.New("DMGRID_REDIS_PREFIX: must be non-empty without braces or spaces"))
	}
	if c.Consumer == "" || strings.ContainsAny(c.Consumer, ".*> ") {
		errs = append(errs, errors.New("DMGRID_INVENTORY_CONSUMER: must be a name without '.', '*', '>' or spaces"))
	}
	if c.DeadLetterSubject == "" || strings.ContainsAny(c.DeadLetterSubject, "*> ") || strings.HasPrefix(c.DeadLetterSubject, events.SubjectRoot+".") {
		errs = append(errs, errors.New("DMGRID_INVENTORY_DEADLETTER_SUBJECT: must be a literal subject outside dmgrid.events"))
	}
	if c.MaxDeliver <= 0 || c.MaxAckPending <= 0 || c.Workers <= 0 || c.Batch <= 0 || c.AckWait <= 0 || c.DedupeWindow <= 0 {
		errs = append(errs, errors.New("DMGRID_INVENTORY_MAX_DELIVER, _MAX_ACK_PENDING, _WORKERS, _BATCH, _ACK_WAIT and _DEDUPE_WINDOW must be positive"))
	}
	if err := c.GRPCTLS.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Service is one inventory replica.
type Service struct {
	cfg    Config
	log    *slog.Logger
	tel    *telemetry.Telemetry
	ownTel bool
	rdb    *redis.Client
	nc     *nats.Conn
	health *health.Server

	Store     *store.Store
	Consumer  *ingest.Consumer
	Inventory *api.Inventory
}

// New connects to Redis and NATS and builds the service; Serve (or Background) starts
// consuming.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: log, health: health.NewServer(), tel: cfg.Telemetry}
	if s.tel == nil {
		tel, err := telemetry.New(ctx, telemetry.Options{Service: "inventory", OTLPEndpoint: cfg.OTLPEndpoint})
		if err != nil {
			return nil, err
		}
		s.tel, s.ownTel = tel, true
	}
	opt, _ := redis.ParseURL(cfg.RedisURL)
	s.rdb = redis.NewClient(opt)
	s.rdb.AddHook(telemetry.NewRedisHook(s.tel))
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.rdb.Ping(pctx).Err(); err != nil {
		s.rdb.Close()
		return nil, fmt.Errorf("connect redis: %w", err)
	}
	s.Store = store.New(s.rdb, cfg.RedisPrefix, store.Options{DedupeWindow: cfg.DedupeWindow})
	if err := s.Store.Load(pctx); err != nil {
		s.rdb.Close()
		return nil, err
	}
	nc, err := nats.Connect(cfg.NATSURL, nats.Name("dmgrid-inventory"), nats.MaxReconnects(-1))
	if err != nil {
		s.rdb.Close()
		return nil, fmt.Errorf("connect nats: %w", err)
	}
	s.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s.Consumer = ingest.NewConsumer(js, s.Store, log, ingest.Config{
		Stream: cfg.EventsStream, Durable: cfg.Consumer, DeadLetterSubject: cfg.DeadLetterSubject,
		DeadLetterStream: cfg.DeadLetterStream, MaxDeliver: cfg.MaxDeliver, MaxAckPending: cfg.MaxAckPending,
		AckWait: cfg.AckWait, Workers: cfg.Workers, Batch: cfg.Batch,
		Tracer: s.tel.Tracers.Tracer("dmgrid/inventory"), Propagator: s.tel.Propagator,
	})
	// Fail fast on a stream or consumer that cannot be set up (wrong stream name, a
	// consumer of the same name with an incompatible configuration).
	if _, err := s.Consumer.Setup(pctx); err != nil {
		s.Close()
		return nil, err
	}
	s.Inventory = &api.Inventory{St: s.Store}
	if err := s.instrument(js); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// instrument exports the consumer's counters and its lag (events in the stream not yet
// delivered to the durable consumer) for Prometheus, read at scrape time.
func (s *Service) instrument(js jetstream.JetStream) error {
	m := s.tel.Meters.Meter("dmgrid/inventory")
	events, err := m.Int64ObservableCounter("dmgrid_inventory_events_total", metric.WithDescription("events handled by the inventory consumer, by result"))
	if err != nil {
		return err
	}
	pending, err := m.Int64ObservableGauge("dmgrid_inventory_pending_events", metric.WithDescription("events in the stream the inventory has not received yet (its lag)"))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		st := s.Consumer.Stats()
		for result, n := range map[string]int64{"applied": st.Applied, "duplicate": st.Duplicates, "ignored": st.Ignored,
			"retried": st.Retried, "dead_lettered": st.DeadLettered} {
			o.ObserveInt64(events, n, metric.WithAttributes(attribute.String("result", result)))
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if c, err := js.Consumer(cctx, s.cfg.EventsStream, s.cfg.Consumer); err == nil {
			if info, err := c.Info(cctx); err == nil {
				o.ObserveInt64(pending, int64(info.NumPending))
			}
		}
		return nil
	}, events, pending)
	return err
}

// Register adds InventoryService (and health) to a server.
func (s *Service) Register(g *grpc.Server) {
	inventoryv1.RegisterInventoryServiceServer(g, s.Inventory)
	healthpb.RegisterHealthServer(g, s.health)
}

// Background consumes events until ctx ends.
func (s *Service) Background(ctx context.Context) error {
	return s.Consumer.Run(ctx)
}

// SetServing flips the health status (readiness).
func (s *Service) SetServing(ok bool) {
	st := healthpb.HealthCheckResponse_SERVING
	if !ok {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(inventoryv1.InventoryService_ServiceDesc.ServiceName, st)
}

// Close releases connections.
func (s *Service) Close() {
	if s.nc != nil {
		s.nc.Drain()
	}
	if s.rdb != nil {
		s.rdb.Close()
	}
	if s.ownTel {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.tel.Shutdown(ctx)
	}
}

// Run serves on cfg.GRPCAddr until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	s, err := New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.GRPCAddr, err)
	}
	return s.Serve(ctx, lis)
}

// Serve consumes events and serves the API on lis until ctx ends, then shuts down in
// order: readiness goes NOT_SERVING, in-flight RPCs finish (GracefulStop, bounded), the
// consumer finishes the events it holds. Close releases NATS and Redis afterwards.
func (s *Service) Serve(ctx context.Context, lis net.Listener) error {
	return lifecycle.ServeGRPC(ctx, lis, s, lifecycle.Options{Name: "inventory", Telemetry: s.tel,
		MetricsAddr: s.cfg.MetricsAddr, PProf: s.cfg.PProf, Log: s.log,
		TLS: s.cfg.GRPCTLS, HealthAddr: s.cfg.HealthAddr, Health: s.health})
}
