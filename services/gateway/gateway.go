// Package gateway is the device-facing edge: a stateless HTTP(S) server that receives
// SyncML DM messages (POST /dm), checks size and type before parsing, decodes XML or WBXML,
// forwards the typed message with the transport facts to a session worker over gRPC
// (balanced round-robin over all workers), and writes the reply in the request's encoding
// with Content-Length. It keeps no state (DESIGN.md "Tiers").
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	sessionv1 "github.com/dmgrid/dmgrid/proto/dmgrid/session/v1"

	"github.com/dmgrid/dmgrid/internal/envflag"
	"github.com/dmgrid/dmgrid/internal/grpctls"
	"github.com/dmgrid/dmgrid/internal/telemetry"
	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/syncml"
	"github.com/dmgrid/dmgrid/pkg/syncmlpb"
)

// Config is the gateway's configuration.
type Config struct {
	HTTPAddr       string        // DMGRID_HTTP_ADDR, default ":8080"
	Path           string        // DMGRID_DM_PATH, default "/dm"
	SessionAddr    string        // DMGRID_SESSION_ADDR: "dns:///session:9090" or "host1:9090,host2:9090"
	MaxBodyBytes   int64         // DMGRID_MAX_BODY_BYTES, default 1 MiB
	RequestTimeout time.Duration // DMGRID_REQUEST_TIMEOUT, default 10s
	LameDuck       time.Duration // DMGRID_LAME_DUCK, default 5s: not ready, still serving, before shutdown
	TLSCertFile    string        // DMGRID_TLS_CERT_FILE (with DMGRID_TLS_KEY_FILE) enables HTTPS
	TLSKeyFile     string
	TLSClientCAs   string // DMGRID_TLS_CLIENT_CA_FILE: verify device certificates when given
	MetricsAddr    string // DMGRID_METRICS_ADDR, default ":9102"; "" disables /metrics
	PProf          bool   // DMGRID_PPROF: also serve the Go profiler on MetricsAddr
	OTLPEndpoint   string // OTEL_EXPORTER_OTLP_ENDPOINT (host:port): export traces over OTLP/gRPC

	// SessionTLS is the TLS of the gRPC link to the session workers (DMGRID_SESSION_TLS_CA to
	// verify them, DMGRID_SESSION_TLS_CERT/_KEY for a client certificate,
	// DMGRID_SESSION_TLS_SERVER_NAME for the name their certificate holds when it is not the
	// target's host); plaintext when all are unset.
	SessionTLS grpctls.ClientConfig

	// Telemetry, when set (tests, the dev stack), is used instead of building providers.
	Telemetry *telemetry.Telemetry
	// TLSReloadInterval is how often the HTTPS certificate's files are checked for a renewal
	// (certfile.DefaultInterval, 30 s, when zero); not a setting, tests shorten it.
	TLSReloadInterval time.Duration
}

// ConfigFromEnv reads the configuration through lookup and validates it.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	r := envflag.NewReader(lookup)
	get := r.String
	c := Config{
		HTTPAddr:       get("DMGRID_HTTP_ADDR", ":8080"),
		Path:           get("DMGRID_DM_PATH", "/dm"),
		SessionAddr:    get("DMGRID_SESSION_ADDR", ""),
		TLSCertFile:    get("DMGRID_TLS_CERT_FILE", ""),
		TLSKeyFile:     get("DMGRID_TLS_KEY_FILE", ""),
		TLSClientCAs:   get("DMGRID_TLS_CLIENT_CA_FILE", ""),
		MetricsAddr:    r.StringOrEmpty("DMGRID_METRICS_ADDR", ":9102"),
		PProf:          r.Bool("DMGRID_PPROF", "false"),
		OTLPEndpoint:   get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
		MaxBodyBytes:   int64(r.Int("DMGRID_MAX_BODY_BYTES", "1048576")),
		RequestTimeout: r.DurationOrZero("DMGRID_REQUEST_TIMEOUT", "10s"),
		LameDuck:       r.DurationOrZero("DMGRID_LAME_DUCK", "5s"),
		SessionTLS:     grpctls.ReadClient(r, grpctls.SessionClientVars),
	}
	if err := r.Err(); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.SessionAddr == "" {
		errs = append(errs, errors.New("DMGRID_SESSION_ADDR is required (dns:///session:9090 or a comma-separated list)"))
	}
	if !strings.HasPrefix(c.Path, "/") {
		errs = append(errs, errors.New("DMGRID_DM_PATH must start with /"))
	}
	if c.MaxBodyBytes < 1024 || c.MaxBodyBytes > 64<<20 {
		errs = append(errs, errors.New("DMGRID_MAX_BODY_BYTES must be between 1 KiB and 64 MiB"))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("DMGRID_TLS_CERT_FILE and DMGRID_TLS_KEY_FILE go together"))
	}
	if c.RequestTimeout <= 0 {
		errs = append(errs, errors.New("DMGRID_REQUEST_TIMEOUT must be positive"))
	}
	if err := c.SessionTLS.Validate(grpctls.SessionClientVars); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Gateway serves device messages.
type Gateway struct {
	cfg    Config
	log    *slog.Logger
	conn   *grpc.ClientConn
	client sessionv1.SessionServiceClient
	ready  atomic.Bool

	tel      *telemetry.Telemetry
	ownTel   bool
	tracer   trace.Tracer
	messages metric.Int64Counter
	duration metric.Float64Histogram
	attrs    telemetry.AttrCache[msgKey]
}

// msgKey keys the attribute sets of the message metrics.
type msgKey struct {
	encoding string
	status   int
}

// New builds a gateway and its gRPC client (round-robin over every resolved worker).
func New(cfg Config, log *slog.Logger) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, log: log, tel: cfg.Telemetry}
	if g.tel == nil {
		tel, err := telemetry.New(context.Background(), telemetry.Options{Service: "gateway", OTLPEndpoint: cfg.OTLPEndpoint})
		if err != nil {
			return nil, err
		}
		g.tel, g.ownTel = tel, true
	}
	g.tracer = g.tel.Tracers.Tracer("dmgrid/gateway")
	meter := g.tel.Meters.Meter("dmgrid/gateway")
	g.messages, _ = meter.Int64Counter("dmgrid_gateway_messages_total", metric.WithDescription("device messages, by encoding and HTTP status"))
	g.duration, _ = meter.Float64Histogram("dmgrid_gateway_message_duration_seconds", metric.WithDescription("time from request to reply"), metric.WithUnit("s"), telemetry.LatencySeconds)

	if cfg.SessionTLS.Log == nil {
		cfg.SessionTLS.Log = log // a renewed client certificate that cannot be used
	}
	conn, err := cfg.SessionTLS.Dial(cfg.SessionAddr, grpctls.SessionClientVars,
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(g.tel.Tracers),
			otelgrpc.WithMeterProvider(g.tel.Meters), otelgrpc.WithPropagators(g.tel.Propagator))))
	if err != nil {
		g.closeTelemetry()
		return nil, fmt.Errorf("dial session workers %s: %w", cfg.SessionAddr, err)
	}
	g.conn, g.client = conn, sessionv1.NewSessionServiceClient(conn)
	g.ready.Store(true)
	return g, nil
}

// Close closes the gRPC connection and flushes telemetry the gateway built itself.
func (g *Gateway) Close() error {
	err := g.conn.Close()
	g.closeTelemetry()
	return err
}

func (g *Gateway) closeTelemetry() {
	if g.ownTel {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.tel.Shutdown(ctx)
	}
}

// statusWriter remembers the status for metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// SetReady flips readiness (lame duck: not ready, still serving).
func (g *Gateway) SetReady(ok bool) { g.ready.Store(ok) }

// Handler returns the HTTP handler: the DM path, /healthz (liveness) and /readyz.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(g.cfg.Path, g.serveDM)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !g.ready.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(msg)+1))
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

// serveDM traces and measures one device message; handleDM does the work.
func (g *Gateway) serveDM(w http.ResponseWriter, r *http.Request) {
	recv := time.Now()
	ctx := g.tel.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := g.tracer.Start(ctx, "dm.message", trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	enc := g.handleDM(sw, r.WithContext(ctx), recv, span)
	span.SetAttributes(attribute.Int("http.response.status_code", sw.code))
	attrs := g.attrs.Get(msgKey{enc, sw.code}, attribute.String("encoding", enc), attribute.Int("status", sw.code))
	g.messages.Add(ctx, 1, attrs)
	g.duration.Record(ctx, time.Since(recv).Seconds(), attrs)
}

func (g *Gateway) handleDM(w http.ResponseWriter, r *http.Request, recv time.Time, span trace.Span) (encoding string) {
	encoding = "unknown"
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		httpError(w, http.StatusMethodNotAllowed, "POST a SyncML DM message")
		return
	}
	// Size before anything is read or parsed.
	if r.ContentLength > g.cfg.MaxBodyBytes {
		httpError(w, http.StatusRequestEntityTooLarge, "body larger than "+strconv.FormatInt(g.cfg.MaxBodyBytes, 10)+" bytes")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, g.cfg.MaxBodyBytes+1))
	if err != nil {
		httpError(w, http.StatusBadRequest, "read body: "+err.Error())
		return
	}
	if int64(len(body)) > g.cfg.MaxBodyBytes {
		httpError(w, http.StatusRequestEntityTooLarge, "body larger than "+strconv.FormatInt(g.cfg.MaxBodyBytes, 10)+" bytes")
		return
	}
	ct := r.Header.Get("Content-Type")
	enc := syncml.ParseContentType(ct)
	if sniffed := syncml.Sniff(body); sniffed != syncml.EncodingUnknown && sniffed != enc {
		// A wrong or missing Content-Type: trust the bytes (PROTOCOL.md §12.1).
		enc = sniffed
	}
	if enc == syncml.EncodingUnknown {
		httpError(w, http.StatusUnsupportedMediaType, "send application/vnd.syncml.dm+xml or application/vnd.syncml.dm+wbxml")
		return
	}
	encoding = enc.String()
	m, _, err := syncml.Decode(body, enc, syncml.Limits{MaxBodyBytes: int(g.cfg.MaxBodyBytes)})
	if err != nil {
		code := http.StatusBadRequest
		var se *syncml.Error
		if errors.As(err, &se) {
			code = se.HTTPStatus()
		}
		g.log.Info("undecodable message", "remote_addr", r.RemoteAddr, "encoding", enc.String(), "err", err)
		httpError(w, code, err.Error())
		return
	}
	span.SetAttributes(attribute.String("device_id", m.Header.Source.LocURI), attribute.String("session_id", m.Header.SessionID),
		attribute.String("msg_id", m.Header.MsgID), attribute.String("encoding", encoding))
	if where, ok := syncmlpb.CheckUTF8(m); !ok {
		httpError(w, http.StatusBadRequest, "syncml: text in "+where+" is not UTF-8")
		return
	}
	tr := &sessionv1.Transport{
		Encoding:    syncmlpb.EncodingToProto(enc),
		ContentType: ct,
		BodySize:    int64(len(body)),
		BodyMd5:     dmauth.BodyHash(body),
		HmacHeader:  r.Header.Get(dmauth.HMACHeaderName),
		RemoteAddr:  r.RemoteAddr,
		ReceiveTime: timestamppb.New(recv),
		RequestUri:  r.URL.RequestURI(),
	}
	if enc == syncml.EncodingWBXML {
		tr.WbxmlVersion = uint32(body[0])
		tr.WbxmlFpiInStringTable = len(body) > 1 && body[1] == 0x00
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		tr.TlsClientIdentity = r.TLS.VerifiedChains[0][0].Subject.String()
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.RequestTimeout)
	defer cancel()
	resp, err := g.client.HandleMessage(ctx, &sessionv1.HandleMessageRequest{Message: syncmlpb.ToProto(m), Transport: tr})
	if err != nil {
		// The device gets a fixed text per status: the worker's error (Redis errors,
		// addresses) is only logged.
		code, text := http.StatusInternalServerError, "internal error"
		switch status.Code(err) {
		case codes.Unavailable, codes.Aborted, codes.DeadlineExceeded, codes.ResourceExhausted:
			// Devices re-POST the same message on 503 (PROTOCOL.md §1); the session
			// worker's retransmission cache makes that safe.
			code, text = http.StatusServiceUnavailable, "session worker unavailable; retry later"
			w.Header().Set("Retry-After", "1")
		case codes.InvalidArgument:
			code, text = http.StatusBadRequest, "message refused by the session worker"
		}
		g.log.Warn("session worker call", "device_id", m.Header.Source.LocURI, "session_id", m.Header.SessionID, "msg_id", m.Header.MsgID,
			"http_status", code, "err", err)
		httpError(w, code, text)
		return
	}
	if resp.HttpStatus != 0 && resp.HttpStatus != http.StatusOK {
		httpError(w, int(resp.HttpStatus), http.StatusText(int(resp.HttpStatus)))
		return
	}
	var out []byte
	if resp.Reply != nil {
		reply, err := syncmlpb.FromProto(resp.Reply)
		if err == nil {
			if enc == syncml.EncodingWBXML {
				out, err = syncml.AppendWBXML(nil, reply, syncml.WBXMLOptions{Version: byte(tr.WbxmlVersion), FPIInStringTable: tr.WbxmlFpiInStringTable})
			} else {
				out, err = syncml.AppendXML(nil, reply, syncml.XMLOptions{})
			}
		}
		if err != nil {
			g.log.Error("encode reply", "device_id", m.Header.Source.LocURI, "session_id", m.Header.SessionID, "msg_id", m.Header.MsgID, "err", err)
			httpError(w, http.StatusInternalServerError, "encode reply")
			return
		}
	}
	if a := resp.ReplyAuth; a != nil && len(out) > 0 {
		w.Header().Set(dmauth.HMACHeaderName, dmauth.FormatHMACHeader(a.Username, dmauth.MAC(a.KeyB64Md5, a.Nonce, out)))
	}
	w.Header().Set("Content-Type", enc.ContentType())
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.Header().Set("Cache-Control", "private")
	w.WriteHeader(http.StatusOK)
	w.Write(out)
	return encoding
}

// Run serves until ctx ends, then goes lame duck: /readyz fails for cfg.LameDuck while
// requests are still served (so load balancers stop sending), then the server shuts down
// gracefully.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	g, err := New(cfg, log)
	if err != nil {
		return err
	}
	defer g.Close()
	lis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	return g.Serve(ctx, lis)
}

// Serve serves on lis until ctx ends.
func (g *Gateway) Serve(ctx context.Context, lis net.Listener) error {
	srv := &http.Server{Handler: g.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second, WriteTimeout: 60 * time.Second}
	if g.cfg.MetricsAddr != "" {
		go func() {
			if err := g.tel.ServeMetrics(ctx, g.cfg.MetricsAddr, g.cfg.PProf, g.log); err != nil {
				g.log.Error("metrics server", "err", err)
			}
		}()
	}
	tlsOn := g.cfg.TLSCertFile != ""
	if tlsOn {
		cfg, err := serverTLS(g.cfg, g.log)
		if err != nil {
			return err
		}
		srv.TLSConfig = cfg
	}
	errc := make(chan error, 1)
	go func() {
		if tlsOn {
			errc <- srv.ServeTLS(lis, "", "") // the certificate comes from TLSConfig.GetCertificate
		} else {
			errc <- srv.Serve(lis)
		}
	}()
	g.log.Info("gateway serving", "http_addr", lis.Addr().String(), "path", g.cfg.Path, "tls", tlsOn,
		"session_tls", g.cfg.SessionTLS.Enabled(), "session_client_certificate", g.cfg.SessionTLS.CertFile != "")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	g.SetReady(false)
	select {
	case <-time.After(g.cfg.LameDuck):
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
