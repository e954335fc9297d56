package e2e

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"

	"github.com/dmgrid/dmgrid/internal/telemetry"
	"github.com/dmgrid/dmgrid/internal/testredis"
	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/services/gateway"
	"github.com/dmgrid/dmgrid/services/inventory"
	"github.com/dmgrid/dmgrid/services/session"
)

// TestOneConnectedTrace: one device message produces one trace across the services: the
// gateway's span, its gRPC call, the session worker's gRPC span, its Redis calls, the
// outbox relay's publish to NATS and a consumer that continues the trace from the NATS
// headers. Each service has its own providers (as in production); the spans meet in one
// in-memory recorder. /metrics of each service carries the main series.
func TestOneConnectedTrace(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := tracetest.NewSpanRecorder()
	newTel := func(name string) *telemetry.Telemetry {
		tel, err := telemetry.New(ctx, telemetry.Options{Service: name, SpanProcessor: rec})
		if err != nil {
			t.Fatal(err)
		}
		return tel
	}
	gwTel, sessTel, consTel := newTel("gateway"), newTel("session"), newTel("consumer")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ns := StartNATS(t)
	svc, err := session.New(ctx, session.Config{RedisURL: testredis.URL(t), RedisPrefix: testredis.Prefix(t), NATSURL: ns.ClientURL(),
		EventsStream: "DMGRID_EVENTS", IdleTimeout: time.Minute, MaxAttempts: 3, OutboxScan: time.Second, Telemetry: sessTel}, log)
	if err != nil {
		t.Fatal(err)
	}
	glis, _ := net.Listen("tcp", "127.0.0.1:0")
	sdone := make(chan struct{})
	go func() { svc.Serve(ctx, glis); svc.Close(); close(sdone) }()
	gw, err := gateway.New(gateway.Config{Path: "/dm", SessionAddr: glis.Addr().String(), MaxBodyBytes: 1 << 20, RequestTimeout: 10 * time.Second, Telemetry: gwTel}, log)
	if err != nil {
		t.Fatal(err)
	}
	hlis, _ := net.Listen("tcp", "127.0.0.1:0")
	gdone := make(chan struct{})
	go func() { gw.Serve(ctx, hlis); gw.Close(); close(gdone) }()
	defer func() { cancel(); <-sdone; <-gdone }()

	// The real inventory consumer continues the events' traces too.
	icfg, err := inventory.ConfigFromEnv(func(k string) (string, bool) {
		v, ok := map[string]string{"DMGRID_REDIS_URL": testredis.URL(t), "DMGRID_NATS_URL": ns.ClientURL(), "DMGRID_REDIS_PREFIX": testredis.Prefix(t)}[k]
		return v, ok
	})
	if err != nil {
		t.Fatal(err)
	}
	icfg.Telemetry = newTel("inventory")
	inv, err := inventory.New(ctx, icfg, log)
	if err != nil {
		t.Fatal(err)
	}
	idone := make(chan struct{})
	go func() { inv.Background(ctx); close(idone) }()
	defer func() { cancel(); <-idone; inv.Close() }()

	conn, err := grpc.NewClient(glis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := devicev1.NewDeviceServiceClient(conn).CreateDevice(ctx, &devicev1.CreateDeviceRequest{Device: &devicev1.Device{
		DeviceId: "IMEI:traced", ClientAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: "tr", Secret: "pw"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := commandv1.NewCommandServiceClient(conn).EnqueueCommands(ctx, &commandv1.EnqueueCommandsRequest{DeviceId: "IMEI:traced",
		Operations: []*commandv1.Operation{{Type: commandv1.OperationType_OPERATION_TYPE_GET, TargetUri: "./DevInfo/Man"}}}); err != nil {
		t.Fatal(err)
	}
	d := dmsim.NewDevice(dmsim.Config{DevID: "IMEI:traced", AuthType: dmauth.TypeMD5, ClientName: "tr", ClientSecret: "pw", ServerURL: "http://" + hlis.Addr().String() + "/dm"})
	if _, err := d.RunSession(ctx, &dmsim.HTTPTransport{Client: &http.Client{Timeout: 10 * time.Second}}, dmsim.SessionOptions{}); err != nil {
		t.Fatal(err)
	}

	// The consumer: read the session_started event and continue its trace.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	cons, err := js.OrderedConsumer(ctx, "DMGRID_EVENTS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"dmgrid.events.session_started.>"}})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("no session_started event: %v", err)
	}
	cctx := consTel.Propagator.Extract(ctx, telemetry.HeaderCarrier(msg.Headers()))
	_, consumeSpan := consTel.Tracers.Tracer("test/consumer").Start(cctx, "events consume", trace.WithSpanKind(trace.SpanKindConsumer))
	consumeSpan.End()

	traceID := consumeSpan.SpanContext().TraceID()
	wanted := []string{"dm.message", "dmgrid.session.v1.SessionService/HandleMessage", "events publish", "events consume", "inventory apply"}
	// Spans end asynchronously (the relay ends its publish span when JetStream's
	// acknowledgement is collected, the inventory after its write): wait for all of them.
	waitFor(t, 10*time.Second, func() bool {
		have := map[string]bool{}
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID() == traceID {
				have[s.Name()] = true
			}
		}
		for _, w := range wanted {
			if !have[w] {
				return false
			}
		}
		return true
	}, "every service's span in the trace")
	names := map[string]bool{}
	byID := map[trace.SpanID]string{}
	var spans []string
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() == traceID {
			names[s.Name()] = true
			byID[s.SpanContext().SpanID()] = s.Name()
			spans = append(spans, s.Name())
		}
	}
	for _, want := range wanted {
		if !names[want] {
			t.Fatalf("trace %s lacks %q; it has %v", traceID, want, spans)
		}
	}
	redis := false
	for n := range names {
		redis = redis || strings.HasPrefix(n, "redis ")
	}
	if !redis {
		t.Fatalf("trace has no Redis span: %v", spans)
	}
	// Parent links: consume ← publish; the gRPC server span's parent is in the trace.
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() != traceID || !s.Parent().IsValid() {
			continue
		}
		if _, ok := byID[s.Parent().SpanID()]; !ok {
			t.Fatalf("span %q has a parent outside the trace", s.Name())
		}
		if (s.Name() == "events consume" || s.Name() == "inventory apply") && byID[s.Parent().SpanID()] != "events publish" {
			t.Fatalf("consumer span's parent is %q", byID[s.Parent().SpanID()])
		}
	}

	// /metrics of each service carries the main series.
	scrape := func(tel *telemetry.Telemetry) string {
		srv := httptest.NewServer(tel.MetricsHandler())
		defer srv.Close()
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	gm, sm := scrape(gwTel), scrape(sessTel)
	if os.Getenv("DMGRID_PRINT_SERIES") != "" {
		for _, l := range strings.Split(gm+sm, "\n") {
			if strings.HasPrefix(l, "# TYPE") {
				t.Log(l)
			}
		}
	}
	// Latency histograms are in seconds with sub-second buckets (the SDK's default buckets
	// put every message below 5 s in one).
	for _, series := range []string{`dmgrid_gateway_message_duration_seconds_bucket{`, `dmgrid_redis_duration_seconds_bucket{`, `dmgrid_nats_publish_duration_seconds_bucket{`} {
		found := false
		for _, l := range strings.Split(gm+sm, "\n") {
			found = found || strings.HasPrefix(l, series) && strings.Contains(l, `le="0.005"`)
		}
		if !found {
			t.Errorf("%s has no 5 ms bucket", strings.TrimSuffix(series, "{"))
		}
	}
	for _, series := range []string{"dmgrid_gateway_messages_total", "dmgrid_gateway_message_duration_seconds_bucket", "rpc_client_"} {
		if !strings.Contains(gm, series) {
			t.Errorf("gateway /metrics lacks %s", series)
		}
	}
	// Every series the Grafana dashboard plots exists (the commit-conflict counter appears
	// only after a conflict, which this single session does not cause).
	dash, err := os.ReadFile("../../deploy/grafana/dmgrid-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	plotted := regexp.MustCompile(`(dmgrid|rpc_server|go_memstats)_[a-z_]+`).FindAllString(string(dash), -1)
	if len(plotted) < 12 {
		t.Fatalf("the dashboard plots only %d series", len(plotted))
	}
	for _, name := range plotted {
		name = strings.TrimSuffix(name, "_bucket")
		if name != "dmgrid_session_commit_conflicts_total" && !strings.Contains(gm+sm, "\n"+name) {
			t.Errorf("the dashboard plots %s, which no service exports", name)
		}
	}
	for _, series := range []string{"dmgrid_session_messages_total", "dmgrid_session_auth_failures_total", "dmgrid_session_sessions_ended_total",
		"dmgrid_session_command_transitions_total", "dmgrid_redis_duration_seconds_bucket", "dmgrid_outbox_published_total",
		"dmgrid_nats_publish_duration_seconds_bucket", "rpc_server_"} {
		if !strings.Contains(sm, series) {
			t.Errorf("session /metrics lacks %s", series)
		}
	}
}
