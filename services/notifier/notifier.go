// Package notifier is the notification tier: it wakes devices with an OMA DM Package 0
// (OMA-TS-DM_Notification §6.2) sent as a WAP Push over SMS (§6.3.1, PROTOCOL.md §9), so that
// they open a server-initiated session (Alert 1200).
//
// Notifications are created through the public NotifierService or by a durable JetStream
// consumer of WakeRequested events, kept in Redis (so they survive restarts and are shared
// by every replica), and sent by a worker loop that claims due notifications, builds the
// Package 0 from the device's server credential and nonce (GetNotificationTarget on the
// session tier), routes it to a provider adapter (SMPP, Kannel, webhook, log), and retries
// with exponential back-off. A second consumer marks a notification ANSWERED when the device
// opens a server-initiated session with its session id; SMPP delivery receipts mark it
// DELIVERED. Each provider's sending rate is limited by a token bucket in Redis shared by
// all replicas.
package notifier

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	notifierv1 "github.com/dmgrid/dmgrid/proto/dmgrid/notifier/v1"
	sessionv1 "github.com/dmgrid/dmgrid/proto/dmgrid/session/v1"

	"github.com/dmgrid/dmgrid/pkg/smpp"
	"github.com/dmgrid/dmgrid/services/notifier/internal/provider"
	"github.com/dmgrid/dmgrid/services/notifier/internal/store"

	"github.com/dmgrid/dmgrid/internal/grpctls"
	"github.com/dmgrid/dmgrid/internal/telemetry"

	"github.com/dmgrid/dmgrid/internal/lifecycle"
)

// Service is one notifier replica.
type Service struct {
	cfg    Config
	log    *slog.Logger
	tel    *telemetry.Telemetry
	ownTel bool
	// stateCounter counts state changes by provider and state (dmgrid_notifier_notifications_total).
	stateCounter metric.Int64Counter
	now          func() time.Time
	rdb          redis.UniversalClient
	st           *store.Store
	nc           *nats.Conn
	js           jetstream.JetStream
	conn         *grpc.ClientConn
	sess         sessionv1.SessionServiceClient
	router       *provider.Router
	providers    map[string]provider.Provider
	closers      []func() error
	health       *health.Server
	kick         chan struct{} // wakes the worker loop early (a notification was created here)
	// events holds notification_state_changed events for the one publisher goroutine, so
	// they reach the stream in the order the states changed.
	events chan *nats.Msg

	// deadLetters counts the events the consumers gave up on, by consumer and cause
	// (dmgrid_notifier_events_dead_lettered_total).
	deadLetters metric.Int64Counter
	// heldEvents counts the events the consumers hold while a dependency is unavailable
	// (dmgrid_notifier_events_held), dependencyUp is 0 for a consumer's dependency from the
	// first event held because of it until nothing is held (dmgrid_notifier_dependency_up).
	heldEvents   metric.Int64UpDownCounter
	dependencyUp metric.Int64Gauge
	// eventAttempts is how often a consumer tries to handle an event before dead-lettering
	// it, eventRetryDelay the wait before the next attempt (tests shorten both).
	eventAttempts   int
	eventRetryDelay time.Duration

	API *API
}

// New connects to Redis, the session tier and NATS (when configured) and builds the
// providers. Nothing is sent until Serve or Background runs.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger != nil {
		log = cfg.Logger
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: log, now: cfg.Now, health: health.NewServer(), kick: make(chan struct{}, 1), events: make(chan *nats.Msg, 1024),
		providers: map[string]provider.Provider{}, eventAttempts: defaultEventAttempts, eventRetryDelay: defaultEventRetryDelay}
	if s.now == nil {
		s.now = time.Now
	}
	s.router, _ = provider.ParseRoutes(cfg.Routes) // checked by Validate
	if len(cfg.RedisClusterAddrs) > 0 {
		s.rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: cfg.RedisClusterAddrs})
	} else {
		opt, _ := redis.ParseURL(cfg.RedisURL)
		s.rdb = redis.NewClient(opt)
	}
	s.tel = cfg.Telemetry
	if s.tel == nil {
		tel, err := telemetry.New(ctx, telemetry.Options{Service: "notifier", OTLPEndpoint: cfg.OTLPEndpoint})
		if err != nil {
			return nil, err
		}
		s.tel, s.ownTel = tel, true
	}
	s.rdb.AddHook(telemetry.NewRedisHook(s.tel))
	s.stateCounter, _ = s.tel.Meters.Meter("dmgrid/notifier").Int64Counter("dmgrid_notifier_notifications_total",
		metric.WithDescription("notification state changes, by provider and new state"))
	s.deadLetters, _ = s.tel.Meters.Meter("dmgrid/notifier").Int64Counter("dmgrid_notifier_events_dead_lettered_total",
		metric.WithDescription("events the notifier's consumers gave up on and dead-lettered, by consumer and cause (undecodable, failing)"))
	s.heldEvents, _ = s.tel.Meters.Meter("dmgrid/notifier").Int64UpDownCounter("dmgrid_notifier_events_held",
		metric.WithDescription("events a consumer holds (in progress, retried with back-off, attempts not counted) while a dependency is unavailable, by consumer"))
	s.dependencyUp, _ = s.tel.Meters.Meter("dmgrid/notifier").Int64Gauge("dmgrid_notifier_dependency_up",
		metric.WithDescription("0 while a consumer holds events because the dependency (session, redis) is unavailable, 1 once nothing is held; by consumer and dependency"))
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.rdb.Ping(pctx).Err(); err != nil {
		s.rdb.Close()
		return nil, fmt.Errorf("connect redis: %w", err)
	}
	s.st = store.New(s.rdb, cfg.RedisPrefix, store.Options{})
	sessTLS := cfg.SessionTLS
	if sessTLS.Log == nil {
		sessTLS.Log = log // certificate reloads are logged with the service's logger
	}
	conn, err := dialSession(cfg.SessionAddr, sessTLS)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("session client %s: %w", cfg.SessionAddr, err)
	}
	s.conn, s.sess = conn, sessionv1.NewSessionServiceClient(conn)
	if err := s.buildProviders(); err != nil {
		s.Close()
		return nil, err
	}
	if cfg.NATSURL != "" {
		nc, err := nats.Connect(cfg.NATSURL, nats.Name("dmgrid-notifier"), nats.MaxReconnects(-1))
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("connect nats: %w", err)
		}
		s.nc = nc
		if s.js, err = jetstream.New(nc); err != nil {
			s.Close()
			return nil, fmt.Errorf("jetstream: %w", err)
		}
	} else {
		log.Warn("DMGRID_NATS_URL not set: wake requests and session answers are not consumed")
	}
	s.API = &API{s: s}
	return s, nil
}

func (s *Service) buildProviders() error {
	c := s.cfg
	s.providers["log"] = &provider.Log{Logger: s.log}
	if c.SMPPAddr != "" {
		p, err := provider.NewSMPP(smpp.Config{Addr: c.SMPPAddr, SystemID: c.SMPPSystemID, Password: c.SMPPPassword,
			ResponseTimeout: min(c.SendTimeout, 10*time.Second), Logger: s.log}, c.SMPPSource, s.log)
		if err != nil {
			return err
		}
		s.providers["smpp"] = p
		s.closers = append(s.closers, p.Close)
	}
	if c.WebhookURL != "" {
		s.providers["webhook"] = &provider.Webhook{URL: c.WebhookURL, Timeout: c.SendTimeout}
	}
	if c.KannelURL != "" {
		s.providers["kannel"] = &provider.Kannel{URL: c.KannelURL, User: c.KannelUser, Password: c.KannelPass, Timeout: c.SendTimeout}
	}
	for name, p := range c.Providers {
		s.providers[name] = p
	}
	return nil
}

// dialSession connects to the session tier as the gateway does (grpctls.ClientConfig.Dial:
// a gRPC target, or a host:port list balanced round-robin).
func dialSession(addr string, tlsCfg grpctls.ClientConfig) (*grpc.ClientConn, error) {
	return tlsCfg.Dial(addr, grpctls.SessionClientVars)
}

// Register adds NotifierService and health to a gRPC server.
func (s *Service) Register(g *grpc.Server) {
	notifierv1.RegisterNotifierServiceServer(g, s.API)
	healthpb.RegisterHealthServer(g, s.health)
}

// SetServing flips readiness.
func (s *Service) SetServing(ok bool) {
	st := healthpb.HealthCheckResponse_SERVING
	if !ok {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(notifierv1.NotifierService_ServiceDesc.ServiceName, st)
}

// Background runs the worker loop, the event consumers and the receipt readers until ctx
// ends, then waits for them.
func (s *Service) Background(ctx context.Context) error {
	var wg sync.WaitGroup
	run := func(f func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(ctx)
		}()
	}
	run(s.workLoop)
	if s.js != nil {
		run(s.publishEvents)
		run(func(ctx context.Context) { s.consume(ctx, "dmgrid-notifier-wake", "wake_requested", s.onWake) })
		run(func(ctx context.Context) {
			s.consume(ctx, "dmgrid-notifier-answered", "session_started", s.onSessionStarted)
		})
	}
	for name, p := range s.providers {
		if rs, ok := p.(provider.ReceiptSource); ok {
			run(func(ctx context.Context) { s.readReceipts(ctx, name, rs.Receipts()) })
		}
	}
	wg.Wait()
	return nil
}

// Serve serves the gRPC API on lis and runs Background until ctx ends, then drains:
// readiness NOT_SERVING, GracefulStop (bounded), background stopped.
func (s *Service) Serve(ctx context.Context, lis net.Listener) error {
	return lifecycle.ServeGRPC(ctx, lis, s, lifecycle.Options{Name: "notifier", Telemetry: s.tel,
		MetricsAddr: s.cfg.MetricsAddr, PProf: s.cfg.PProf, Log: s.log,
		TLS: s.cfg.GRPCTLS, HealthAddr: s.cfg.HealthAddr, Health: s.health})
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

// Close releases providers and connections. Call it after Serve/Background returned.
func (s *Service) Close() {
	if s.ownTel {
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s.tel.Shutdown(ctx)
		}()
	}
	for _, c := range s.closers {
		if err := c(); err != nil {
			s.log.Warn("close provider", "err", err)
		}
	}
	s.closers = nil
	if s.nc != nil {
		s.nc.Drain()
	}
	if s.conn != nil {
		s.conn.Close()
	}
	if s.rdb != nil {
		s.rdb.Close()
	}
}
