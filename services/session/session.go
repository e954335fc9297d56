// Package session is the session-worker tier: the DM session engine behind the internal
// dmgrid.session.v1.SessionService (called by gateways for every device message), the
// public DeviceService and CommandService, the Redis state, and the relay that publishes
// committed events to NATS JetStream. Workers are stateless; run as many as needed.
package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"
	sessionv1 "github.com/dmgrid/dmgrid/proto/dmgrid/session/v1"

	"github.com/dmgrid/dmgrid/internal/telemetry"
	"github.com/dmgrid/dmgrid/services/session/internal/api"
	"github.com/dmgrid/dmgrid/services/session/internal/engine"
	"github.com/dmgrid/dmgrid/services/session/internal/outbox"
	"github.com/dmgrid/dmgrid/services/session/internal/store"

	"github.com/dmgrid/dmgrid/internal/envflag"
	"github.com/dmgrid/dmgrid/internal/grpctls"

	"github.com/dmgrid/dmgrid/internal/lifecycle"
)

// Config is the session service's configuration, read from the environment.
type Config struct {
	GRPCAddr          string        // DMGRID_GRPC_ADDR, default ":9090"
	RedisURL          string        // DMGRID_REDIS_URL, e.g. redis://127.0.0.1:6379/0
	RedisClusterAddrs []string      // DMGRID_REDIS_CLUSTER_ADDRS, comma-separated (instead of RedisURL)
	RedisPrefix       string        // DMGRID_REDIS_PREFIX, default "dmgrid"
	NATSURL           string        // DMGRID_NATS_URL; empty: events wait in Redis until configured
	EventsStream      string        // DMGRID_EVENTS_STREAM, default DMGRID_EVENTS
	SecretKey         []byte        // DMGRID_SECRET_KEY, base64 of 32 bytes; seals basic server credentials
	IdleTimeout       time.Duration // DMGRID_IDLE_TIMEOUT, default 5m
	MaxAttempts       int           // DMGRID_MAX_ATTEMPTS, default 3
	ChallengeLimit    int64         // DMGRID_CHALLENGE_LIMIT per device per minute, default 30
	ServerMaxMsgSize  int64         // DMGRID_SERVER_MAX_MSG_SIZE, default 1 MiB
	ServerMaxObjSize  int64         // DMGRID_SERVER_MAX_OBJ_SIZE, default 4 MiB
	OutboxScan        time.Duration // DMGRID_OUTBOX_SCAN, default 10s
	OutboxLinger      time.Duration // DMGRID_OUTBOX_LINGER, default 0: how long the relay gathers devices into a batch
	DevDetailEvery    time.Duration // DMGRID_DEVDETAIL_EVERY, default 24h; 0 disables the DevDetail collection policy
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
	get, dur := r.String, r.Duration
	num := func(k, def string) int64 { return int64(r.Int(k, def)) }
	c := Config{
		GRPCAddr:         get("DMGRID_GRPC_ADDR", ":9090"),
		RedisURL:         get("DMGRID_REDIS_URL", ""),
		RedisPrefix:      get("DMGRID_REDIS_PREFIX", "dmgrid"),
		NATSURL:          get("DMGRID_NATS_URL", ""),
		EventsStream:     get("DMGRID_EVENTS_STREAM", "DMGRID_EVENTS"),
		IdleTimeout:      dur("DMGRID_IDLE_TIMEOUT", "5m"),
		MaxAttempts:      int(num("DMGRID_MAX_ATTEMPTS", "3")),
		ChallengeLimit:   num("DMGRID_CHALLENGE_LIMIT", "30"),
		ServerMaxMsgSize: num("DMGRID_SERVER_MAX_MSG_SIZE", "1048576"),
		ServerMaxObjSize: num("DMGRID_SERVER_MAX_OBJ_SIZE", "4194304"),
		OutboxScan:       dur("DMGRID_OUTBOX_SCAN", "10s"),
		MetricsAddr:      r.StringOrEmpty("DMGRID_METRICS_ADDR", ":9102"),
		PProf:            r.Bool("DMGRID_PPROF", "false"),
		OTLPEndpoint:     get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
	}
	c.DevDetailEvery = r.DurationOrZero("DMGRID_DEVDETAIL_EVERY", "24h")
	c.OutboxLinger = r.DurationOrZero("DMGRID_OUTBOX_LINGER", "0s")
	c.RedisClusterAddrs = r.HostPorts("DMGRID_REDIS_CLUSTER_ADDRS")
	c.GRPCTLS = grpctls.ReadServer(r)
	c.HealthAddr = get("DMGRID_GRPC_HEALTH_ADDR", "")
	if v := get("DMGRID_SECRET_KEY", ""); v != "" {
		k, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(k) != 32 {
			r.Fail(errors.New("DMGRID_SECRET_KEY: want base64 of 32 random bytes (openssl rand -base64 32)"))
		}
		c.SecretKey = k
	}
	if err := r.Err(); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.RedisURL == "" && len(c.RedisClusterAddrs) == 0 {
		errs = append(errs, errors.New("DMGRID_REDIS_URL or DMGRID_REDIS_CLUSTER_ADDRS is required"))
	}
	if c.RedisURL != "" && len(c.RedisClusterAddrs) > 0 {
		errs = append(errs, errors.New("set DMGRID_REDIS_URL or DMGRID_REDIS_CLUSTER_ADDRS, not both"))
	}
	if c.RedisURL != "" {
		if _, err := redis.ParseURL(c.RedisURL); err != nil {
			errs = append(errs, fmt.Errorf("DMGRID_REDIS_URL: %w", err))
		}
	}
	if c.RedisPrefix == "" || strings.ContainsAny(c.RedisPrefix, "{} ") {
		errs = append(errs, errors.New("DMGRID_REDIS_PREFIX: must be non-empty without braces or spaces"))
	}
	if c.OutboxLinger > time.Second {
		errs = append(errs, errors.New("DMGRID_OUTBOX_LINGER: at most 1s (events wait that long before they are published)"))
	}
	if c.IdleTimeout <= 0 || c.MaxAttempts <= 0 {
		errs = append(errs, errors.New("DMGRID_IDLE_TIMEOUT and DMGRID_MAX_ATTEMPTS must be positive"))
	}
	if err := c.GRPCTLS.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func newCommandID(deviceID string) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return store.NewCommandID(deviceID, hex.EncodeToString(b))
}

// Service is one session worker.
type Service struct {
	cfg    Config
	log    *slog.Logger
	tel    *telemetry.Telemetry
	ownTel bool
	rdb    redis.UniversalClient
	nc     *nats.Conn
	st     *store.Store
	relay  *outbox.Relay
	health *health.Server

	Sessions *api.Sessions
	Devices  *api.Devices
	Commands *api.Commands
}

// New connects to Redis (and NATS when configured) and builds the service.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: log, health: health.NewServer(), tel: cfg.Telemetry}
	if s.tel == nil {
		tel, err := telemetry.New(ctx, telemetry.Options{Service: "session", OTLPEndpoint: cfg.OTLPEndpoint})
		if err != nil {
			return nil, err
		}
		s.tel, s.ownTel = tel, true
	}
	if len(cfg.RedisClusterAddrs) > 0 {
		s.rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: cfg.RedisClusterAddrs})
	} else {
		opt, _ := redis.ParseURL(cfg.RedisURL)
		s.rdb = redis.NewClient(opt)
	}
	s.rdb.AddHook(telemetry.NewRedisHook(s.tel))
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.rdb.Ping(pctx).Err(); err != nil {
		s.rdb.Close()
		return nil, fmt.Errorf("connect redis: %w", err)
	}
	opt := store.Options{SessionTTL: 2*cfg.IdleTimeout + time.Minute}
	if cfg.SecretKey != nil {
		sealer, err := store.NewSealer(cfg.SecretKey)
		if err != nil {
			return nil, err
		}
		opt.Sealer = sealer
	}
	s.st = store.New(s.rdb, cfg.RedisPrefix, opt)
	var notifier api.Notifier
	var js jetstream.JetStream
	if cfg.NATSURL != "" {
		nc, err := nats.Connect(cfg.NATSURL, nats.Name("dmgrid-session"), nats.MaxReconnects(-1))
		if err != nil {
			s.rdb.Close()
			return nil, fmt.Errorf("connect nats: %w", err)
		}
		s.nc = nc
		js, err = jetstream.New(nc)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("jetstream: %w", err)
		}
		if _, err := outbox.EnsureStream(pctx, js, cfg.EventsStream); err != nil {
			s.Close()
			return nil, err
		}
		meter := s.tel.Meters.Meter("dmgrid/outbox")
		published, _ := meter.Int64Counter("dmgrid_outbox_published_total", metric.WithDescription("events published to JetStream"))
		latency, _ := meter.Float64Histogram("dmgrid_nats_publish_duration_seconds", metric.WithDescription("JetStream publish latency"), metric.WithUnit("s"), telemetry.LatencySeconds)
		s.relay = outbox.New(s.st, js, log, outbox.Config{ScanInterval: cfg.OutboxScan, Linger: cfg.OutboxLinger,
			Tracer: s.tel.Tracers.Tracer("dmgrid/outbox"), Propagator: s.tel.Propagator,
			PublishedCounter: published, PublishLatency: latency})
		notifier = s.relay
	} else {
		log.Warn("DMGRID_NATS_URL not set: events stay in the Redis outbox until a worker with NATS relays them")
	}
	eng := engine.New(engine.Config{IdleTimeout: cfg.IdleTimeout, MaxAttempts: cfg.MaxAttempts,
		ServerMaxMsgSize: cfg.ServerMaxMsgSize, ServerMaxObjSize: cfg.ServerMaxObjSize,
		DevDetailEvery: cfg.DevDetailEvery, NewCommandID: newCommandID})
	s.Sessions = &api.Sessions{St: s.st, Engine: eng, Relay: notifier, Log: log, Now: time.Now,
		ChallengeLimit: cfg.ChallengeLimit, ChallengeWindow: time.Minute,
		Metrics: api.NewMetrics(s.tel.Meters), Propagator: s.tel.Propagator}
	s.Devices = &api.Devices{St: s.st, Relay: notifier, Now: time.Now, Propagator: s.tel.Propagator}
	s.Commands = &api.Commands{St: s.st, Relay: notifier, JS: js, Stream: cfg.EventsStream, Now: time.Now, Propagator: s.tel.Propagator}
	return s, nil
}

// Register adds the service's gRPC APIs (and health) to a server.
func (s *Service) Register(g *grpc.Server) {
	sessionv1.RegisterSessionServiceServer(g, s.Sessions)
	devicev1.RegisterDeviceServiceServer(g, s.Devices)
	commandv1.RegisterCommandServiceServer(g, s.Commands)
	healthpb.RegisterHealthServer(g, s.health)
}

// Background runs the outbox relay until ctx ends.
func (s *Service) Background(ctx context.Context) error {
	if s.relay == nil {
		<-ctx.Done()
		return nil
	}
	return s.relay.Run(ctx)
}

// SetServing flips the health status (readiness) for all services.
func (s *Service) SetServing(ok bool) {
	st := healthpb.HealthCheckResponse_SERVING
	if !ok {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	s.health.SetServingStatus("", st)
	for _, n := range []string{sessionv1.SessionService_ServiceDesc.ServiceName, devicev1.DeviceService_ServiceDesc.ServiceName, commandv1.CommandService_ServiceDesc.ServiceName} {
		s.health.SetServingStatus(n, st)
	}
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

// Run serves the gRPC APIs on cfg.GRPCAddr until ctx ends, then drains: readiness goes
// NOT_SERVING, in-flight RPCs finish (GracefulStop, bounded), NATS drains, Redis closes.
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

// Serve serves on lis until ctx ends.
func (s *Service) Serve(ctx context.Context, lis net.Listener) error {
	return lifecycle.ServeGRPC(ctx, lis, s, lifecycle.Options{Name: "session worker", Telemetry: s.tel,
		MetricsAddr: s.cfg.MetricsAddr, PProf: s.cfg.PProf, Log: s.log,
		TLS: s.cfg.GRPCTLS, HealthAddr: s.cfg.HealthAddr, Health: s.health,
		// Clients (gateways, notifiers) resolve the headless Service once and re-resolve
		// only when a connection closes: ending connections after a while lets new workers
		// added by the autoscaler get traffic (GOAWAY, then in-flight RPCs finish).
		ServerOptions: []grpc.ServerOption{grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge: 2 * time.Minute, MaxConnectionAgeGrace: 30 * time.Second})}})
}
