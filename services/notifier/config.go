package notifier

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dmgrid/dmgrid/pkg/events"
	"github.com/dmgrid/dmgrid/pkg/pkg0"
	"github.com/dmgrid/dmgrid/services/notifier/internal/provider"

	"github.com/dmgrid/dmgrid/internal/telemetry"

	"github.com/dmgrid/dmgrid/internal/envflag"
	"github.com/dmgrid/dmgrid/internal/grpctls"
)

// Config is the notifier's configuration, read from the environment.
type Config struct {
	GRPCAddr          string   // DMGRID_GRPC_ADDR, default ":9092"
	RedisURL          string   // DMGRID_REDIS_URL
	RedisClusterAddrs []string // DMGRID_REDIS_CLUSTER_ADDRS, comma-separated (instead of RedisURL)
	RedisPrefix       string   // DMGRID_REDIS_PREFIX, default "dmgrid"
	NATSURL           string   // DMGRID_NATS_URL; empty: no wake or answer consumers
	EventsStream      string   // DMGRID_EVENTS_STREAM, default DMGRID_EVENTS
	// DeadLetterSubject is where the event consumers put the events they give up on:
	// undecodable ones at once, failing ones on their last attempt
	// (DMGRID_NOTIFIER_DEADLETTER_SUBJECT, default "dmgrid.deadletter.notifier", which an
	// empty value also means).
	DeadLetterSubject string
	// DeadLetterStream holds the dead letters and is created when missing
	// (DMGRID_DEADLETTER_STREAM, default DMGRID_DEADLETTER, the inventory's too; "none", or
	// empty here: plain NATS publish, at most once).
	DeadLetterStream string
	// SessionAddr is where GetNotificationTarget is served (DMGRID_SESSION_ADDR): a gRPC
	// target ("dns:///session:9090") or a comma-separated list of host:port, balanced
	// round-robin.
	SessionAddr string
	// SessionTLS is the TLS of the link to the session tier (DMGRID_SESSION_TLS_CA to verify
	// the workers, DMGRID_SESSION_TLS_CERT/_KEY for a client certificate,
	// DMGRID_SESSION_TLS_SERVER_NAME for the name their certificate holds when it is not the
	// target's host); plaintext when all are unset.
	SessionTLS grpctls.ClientConfig
	// GRPCTLS is the NotifierService server's TLS (DMGRID_GRPC_TLS_CERT, DMGRID_GRPC_TLS_KEY;
	// mutual TLS with DMGRID_GRPC_TLS_CLIENT_CA); plaintext when unset.
	GRPCTLS grpctls.ServerConfig
	// HealthAddr (DMGRID_GRPC_HEALTH_ADDR) also serves gRPC health, alone and in plaintext,
	// on this address: Kubernetes' gRPC probes cannot do TLS. Unset: none.
	HealthAddr string

	// Routes picks a provider per device (DMGRID_NOTIFIER_ROUTES, default "default=log"); see
	// provider.ParseRoutes.
	Routes string

	SMPPAddr     string // DMGRID_SMPP_ADDR host:port; enables the "smpp" provider
	SMPPSystemID string // DMGRID_SMPP_SYSTEM_ID
	SMPPPassword string // DMGRID_SMPP_PASSWORD
	SMPPSource   string // DMGRID_SMPP_SOURCE, originator, default "dmgrid"
	WebhookURL   string // DMGRID_WEBHOOK_URL; enables the "webhook" provider
	KannelURL    string // DMGRID_KANNEL_URL (smsbox .../cgi-bin/sendsms); enables "kannel"
	KannelUser   string // DMGRID_KANNEL_USER
	KannelPass   string // DMGRID_KANNEL_PASS

	// PKG0Version is the trigger's version field (DMGRID_PKG0_VERSION, default 11; PROTOCOL.md §9.1).
	PKG0Version uint16
	// RateLimits are SMS per second per provider, shared by all replicas
	// (DMGRID_NOTIFIER_RATE_LIMITS, e.g. "smpp=50,kannel=20:40" where ":40" is the burst;
	// the burst defaults to the rate). Providers without an entry are not limited.
	RateLimits map[string]RateLimit
	// MaxAttempts is how many sends are tried before FAILED (DMGRID_NOTIFIER_MAX_ATTEMPTS, default 5).
	MaxAttempts int
	// BackoffMin and BackoffMax bound the exponential back-off between attempts, jittered to
	// [d/2, d] (DMGRID_NOTIFIER_BACKOFF_MIN 30s, DMGRID_NOTIFIER_BACKOFF_MAX 10m).
	BackoffMin, BackoffMax time.Duration
	// AnswerTimeout: a SENT notification the device has not answered by then is EXPIRED and
	// the device may be notified again (DMGRID_NOTIFIER_ANSWER_TIMEOUT, default 15m).
	AnswerTimeout time.Duration
	// PollInterval is how often the worker looks for due notifications
	// (DMGRID_NOTIFIER_POLL, default 500ms).
	PollInterval time.Duration
	// Lease is how long a claimed notification is hidden from other replicas
	// (DMGRID_NOTIFIER_LEASE, default 1m; must exceed SendTimeout).
	Lease time.Duration
	// SendTimeout bounds one provider send (DMGRID_NOTIFIER_SEND_TIMEOUT, default 20s).
	SendTimeout time.Duration
	// Concurrency is how many notifications one replica sends at once (DMGRID_NOTIFIER_CONCURRENCY, default 8).
	Concurrency int
	// MaxEventAge: wake events older than this are skipped (DMGRID_NOTIFIER_MAX_EVENT_AGE, default 1h).
	MaxEventAge time.Duration

	// MetricsAddr serves /metrics (DMGRID_METRICS_ADDR, default ":9102"; "" disables it).
	MetricsAddr string
	PProf       bool // DMGRID_PPROF: also serve the Go profiler on MetricsAddr
	// OTLPEndpoint exports traces over OTLP/gRPC (OTEL_EXPORTER_OTLP_ENDPOINT, host:port).
	OTLPEndpoint string
	// Telemetry, when set (tests, the dev stack), is used instead of building providers.
	Telemetry *telemetry.Telemetry

	// Providers, when set (tests, embedding), add or replace provider adapters by name.
	Providers map[string]Provider
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger, when nil, is the one passed to New.
	Logger *slog.Logger
}

// RateLimit is a token bucket: Rate SMS per second, Burst at once.
type RateLimit struct {
	Rate  float64
	Burst int
}

// ConfigFromEnv reads the configuration through lookup (os.LookupEnv in main, a map in
// tests) and validates it.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	r := envflag.NewReader(lookup)
	get, dur, num := r.String, r.Duration, r.Int
	c := Config{
		GRPCAddr:      get("DMGRID_GRPC_ADDR", ":9092"),
		MetricsAddr:   r.StringOrEmpty("DMGRID_METRICS_ADDR", ":9102"),
		PProf:         r.Bool("DMGRID_PPROF", "false"),
		OTLPEndpoint:  get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
		RedisURL:      get("DMGRID_REDIS_URL", ""),
		RedisPrefix:   get("DMGRID_REDIS_PREFIX", "dmgrid"),
		NATSURL:       get("DMGRID_NATS_URL", ""),
		EventsStream:  get("DMGRID_EVENTS_STREAM", "DMGRID_EVENTS"),
		SessionAddr:   get("DMGRID_SESSION_ADDR", ""),
		Routes:        get("DMGRID_NOTIFIER_ROUTES", "default=log"),
		SMPPAddr:      get("DMGRID_SMPP_ADDR", ""),
		SMPPSystemID:  get("DMGRID_SMPP_SYSTEM_ID", ""),
		SMPPPassword:  get("DMGRID_SMPP_PASSWORD", ""),
		SMPPSource:    get("DMGRID_SMPP_SOURCE", "dmgrid"),
		WebhookURL:    get("DMGRID_WEBHOOK_URL", ""),
		KannelURL:     get("DMGRID_KANNEL_URL", ""),
		KannelUser:    get("DMGRID_KANNEL_USER", ""),
		KannelPass:    get("DMGRID_KANNEL_PASS", ""),
		MaxAttempts:   num("DMGRID_NOTIFIER_MAX_ATTEMPTS", "5"),
		BackoffMin:    dur("DMGRID_NOTIFIER_BACKOFF_MIN", "30s"),
		BackoffMax:    dur("DMGRID_NOTIFIER_BACKOFF_MAX", "10m"),
		AnswerTimeout: dur("DMGRID_NOTIFIER_ANSWER_TIMEOUT", "15m"),
		PollInterval:  dur("DMGRID_NOTIFIER_POLL", "500ms"),
		Lease:         dur("DMGRID_NOTIFIER_LEASE", "1m"),
		SendTimeout:   dur("DMGRID_NOTIFIER_SEND_TIMEOUT", "20s"),
		Concurrency:   num("DMGRID_NOTIFIER_CONCURRENCY", "8"),
		MaxEventAge:   dur("DMGRID_NOTIFIER_MAX_EVENT_AGE", "1h"),
	}
	c.DeadLetterSubject = get("DMGRID_NOTIFIER_DEADLETTER_SUBJECT", defaultDeadLetterSubject)
	if c.DeadLetterStream = get("DMGRID_DEADLETTER_STREAM", events.DefaultDeadLetterStream); c.DeadLetterStream == "none" {
		c.DeadLetterStream = "" // plain NATS publish
	}
	c.RedisClusterAddrs = r.HostPorts("DMGRID_REDIS_CLUSTER_ADDRS")
	c.SessionTLS = grpctls.ReadClient(r, grpctls.SessionClientVars)
	c.GRPCTLS = grpctls.ReadServer(r)
	c.HealthAddr = get("DMGRID_GRPC_HEALTH_ADDR", "")
	v, err := strconv.ParseUint(get("DMGRID_PKG0_VERSION", strconv.Itoa(pkg0.DefaultVersion)), 10, 16)
	if err != nil || v > pkg0.MaxVersion {
		r.Fail(fmt.Errorf("DMGRID_PKG0_VERSION: want 0..%d (11 is OMA DM 1.2.1's value)", pkg0.MaxVersion))
	}
	c.PKG0Version = uint16(v)
	rl, err := ParseRateLimits(get("DMGRID_NOTIFIER_RATE_LIMITS", ""))
	if err != nil {
		r.Fail(fmt.Errorf("DMGRID_NOTIFIER_RATE_LIMITS: %w", err))
	}
	c.RateLimits = rl
	if err := r.Err(); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// ParseRateLimits parses "name=rate[:burst],...".
func ParseRateLimits(s string) (map[string]RateLimit, error) {
	out := map[string]RateLimit{}
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		name, v, ok := strings.Cut(e, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("%q: want provider=rate[:burst]", e)
		}
		rs, bs, hasBurst := strings.Cut(v, ":")
		rate, err := strconv.ParseFloat(rs, 64)
		if err != nil || rate <= 0 {
			return nil, fmt.Errorf("%q: rate must be a positive number per second", e)
		}
		burst := max(int(rate), 1)
		if hasBurst {
			if burst, err = strconv.Atoi(bs); err != nil || burst <= 0 {
				return nil, fmt.Errorf("%q: burst must be a positive integer", e)
			}
		}
		out[name] = RateLimit{Rate: rate, Burst: burst}
	}
	return out, nil
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
	if c.SessionAddr == "" {
		errs = append(errs, errors.New("DMGRID_SESSION_ADDR is required (the session tier serving GetNotificationTarget)"))
	}
	if c.PKG0Version > pkg0.MaxVersion {
		errs = append(errs, fmt.Errorf("DMGRID_PKG0_VERSION: want 0..%d", pkg0.MaxVersion))
	}
	if c.MaxAttempts <= 0 || c.Concurrency <= 0 {
		errs = append(errs, errors.New("DMGRID_NOTIFIER_MAX_ATTEMPTS and DMGRID_NOTIFIER_CONCURRENCY must be positive"))
	}
	if c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin {
		errs = append(errs, errors.New("DMGRID_NOTIFIER_BACKOFF_MIN must be positive and at most DMGRID_NOTIFIER_BACKOFF_MAX"))
	}
	if c.AnswerTimeout <= 0 || c.PollInterval <= 0 || c.SendTimeout <= 0 {
		errs = append(errs, errors.New("DMGRID_NOTIFIER_ANSWER_TIMEOUT, _POLL and _SEND_TIMEOUT must be positive"))
	}
	if d := c.DeadLetterSubject; d != "" && (strings.ContainsAny(d, "*> ") || strings.HasPrefix(d, events.SubjectRoot+".")) {
		errs = append(errs, errors.New("DMGRID_NOTIFIER_DEADLETTER_SUBJECT: must be a literal subject outside dmgrid.events"))
	}
	if strings.ContainsAny(c.DeadLetterStream, ".*> ") {
		errs = append(errs, errors.New("DMGRID_DEADLETTER_STREAM: must be a stream name without '.', '*', '>' or spaces"))
	}
	if c.Lease <= c.SendTimeout {
		errs = append(errs, errors.New("DMGRID_NOTIFIER_LEASE must exceed DMGRID_NOTIFIER_SEND_TIMEOUT, or a slow send is claimed twice"))
	}
	r, err := provider.ParseRoutes(c.Routes)
	if err != nil {
		errs = append(errs, fmt.Errorf("DMGRID_NOTIFIER_ROUTES: %w", err))
	} else {
		for _, p := range r.Providers() {
			if !c.hasProvider(p) {
				errs = append(errs, fmt.Errorf("DMGRID_NOTIFIER_ROUTES: provider %q is not configured (known: log, smpp with DMGRID_SMPP_ADDR, webhook with DMGRID_WEBHOOK_URL, kannel with DMGRID_KANNEL_URL)", p))
			}
		}
	}
	for name, l := range c.RateLimits {
		if l.Rate <= 0 || l.Burst <= 0 {
			errs = append(errs, fmt.Errorf("rate limit of %s must be positive", name))
		}
	}
	if err := c.SessionTLS.Validate(grpctls.SessionClientVars); err != nil {
		errs = append(errs, err)
	}
	if err := c.GRPCTLS.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// defaultDeadLetterSubject is the notifier's dead-letter subject unless configured.
const defaultDeadLetterSubject = events.DeadLetterRoot + ".notifier"

// deadLetterSubject is the configured dead-letter subject or the default.
func (c Config) deadLetterSubject() string {
	if c.DeadLetterSubject == "" {
		return defaultDeadLetterSubject
	}
	return c.DeadLetterSubject
}

func (c Config) hasProvider(name string) bool {
	if _, ok := c.Providers[name]; ok {
		return true
	}
	switch name {
	case "log":
		return true
	case "smpp":
		return c.SMPPAddr != ""
	case "webhook":
		return c.WebhookURL != ""
	case "kannel":
		return c.KannelURL != ""
	}
	return false
}

// Provider is an SMS provider adapter (see Config.Providers): Send hands every segment of a
// message to the carrier and returns the provider's ids.
type Provider = provider.Provider

// Message is what a Provider sends: the destination MSISDN and the SMS user data of each
// segment, UDH included.
type Message = provider.Message
