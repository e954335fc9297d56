package api

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"

	"github.com/dmgrid/dmgrid/internal/telemetry"
	"github.com/dmgrid/dmgrid/pkg/events"
)

// Metrics are the session service's own instruments (exported for Prometheus at /metrics).
type Metrics struct {
	messages     metric.Int64Counter
	authFailures metric.Int64Counter
	sessionsEnd  metric.Int64Counter
	commands     metric.Int64Counter
	conflicts    metric.Int64Counter
	attrs        telemetry.AttrCache[attrKey]
}

// attrKey is up to two attributes' keys and values.
type attrKey [4]string

// NewMetrics creates the instruments on a meter provider.
func NewMetrics(mp metric.MeterProvider) *Metrics {
	m := mp.Meter("dmgrid/session")
	c := func(name, desc string) metric.Int64Counter {
		ctr, _ := m.Int64Counter(name, metric.WithDescription(desc))
		return ctr
	}
	return &Metrics{
		messages:     c("dmgrid_session_messages_total", "device messages handled, by encoding and outcome (refused and failed ones included)"),
		authFailures: c("dmgrid_session_auth_failures_total", "messages refused for authentication (unknown device, missing or wrong credentials)"),
		sessionsEnd:  c("dmgrid_session_sessions_ended_total", "sessions ended, by outcome"),
		commands:     c("dmgrid_session_command_transitions_total", "command state changes, by new state"),
		conflicts:    c("dmgrid_session_commit_conflicts_total", "commits retried because another worker changed the session first"),
	}
}

func (m *Metrics) add(ctx context.Context, c metric.Int64Counter, n int64, attrs ...attribute.KeyValue) {
	if m == nil || c == nil {
		return
	}
	if len(attrs) > 2 {
		c.Add(ctx, n, metric.WithAttributes(attrs...))
		return
	}
	var k attrKey
	for i, a := range attrs {
		k[2*i], k[2*i+1] = string(a.Key), a.Value.Emit()
	}
	c.Add(ctx, n, m.attrs.Get(k, attrs...))
}

// frame gives an event its id and the trace of ctx (through p; none when p is nil) and
// marshals it: every event the session service commits is framed here.
func frame(ctx context.Context, p propagation.TextMapPropagator, ev *eventsv1.Event) ([]byte, error) {
	ev.EventId = events.NewID()
	ev.TraceParent = traceParent(ctx, p)
	b, err := proto.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("marshal event: %w", err)
	}
	return b, nil
}

// traceParent returns the W3C traceparent of ctx's span ("" without one), for events.
func traceParent(ctx context.Context, p propagation.TextMapPropagator) string {
	if p == nil {
		return ""
	}
	carrier := propagation.MapCarrier{}
	p.Inject(ctx, carrier)
	return carrier.Get("traceparent")
}
