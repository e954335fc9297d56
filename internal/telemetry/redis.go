package telemetry

import (
	"context"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// LatencySeconds are the bucket boundaries of every latency histogram (unit s): 100 µs to
// 10 s. The SDK's default boundaries (0, 5, 10, 25, … 10000) suit milliseconds; in seconds
// they would put every message, command and publish in the first bucket.
var LatencySeconds = metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

// RedisHook traces every Redis command and pipeline as a client span and records its
// latency (dmgrid_redis_duration_seconds).
type RedisHook struct {
	tracer   trace.Tracer
	dur      metric.Float64Histogram
	attrs    AttrCache[string]
	pipeline metric.MeasurementOption // the pipeline histogram's attributes, built once
}

// NewRedisHook returns the hook; add it with client.AddHook.
func NewRedisHook(t *Telemetry) *RedisHook {
	m := t.Meters.Meter("dmgrid/redis")
	dur, _ := m.Float64Histogram("dmgrid_redis_duration_seconds", metric.WithDescription("Redis command and pipeline latency"), metric.WithUnit("s"), LatencySeconds)
	return &RedisHook{tracer: t.Tracers.Tracer("dmgrid/redis"), dur: dur,
		pipeline: metric.WithAttributeSet(attribute.NewSet(attribute.String("cmd", "pipeline")))}
}

// DialHook passes through.
func (h *RedisHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

// ProcessHook wraps one command. A span is made only inside a recorded trace (with no
// trace exporter, or outside any traced work, the command is only timed).
func (h *RedisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		name := cmd.Name()
		ctx, span := h.span(ctx, name, attribute.String("db.operation", name))
		start := time.Now()
		err := next(ctx, cmd)
		h.dur.Record(ctx, time.Since(start).Seconds(), h.attrs.Get(name, attribute.String("cmd", name)))
		end(span, err)
		return err
	}
}

// ProcessPipelineHook wraps one pipeline (one round trip).
func (h *RedisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		ctx, span := h.span(ctx, "pipeline", attribute.Int("db.commands", len(cmds)))
		start := time.Now()
		err := next(ctx, cmds)
		h.dur.Record(ctx, time.Since(start).Seconds(), h.pipeline)
		end(span, err)
		return err
	}
}

// span starts a client span "redis <what>" inside a recorded trace only; otherwise it
// returns ctx and nil, at no cost.
func (h *RedisHook) span(ctx context.Context, what string, kv attribute.KeyValue) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	return h.tracer.Start(ctx, "redis "+what, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system", "redis"), kv))
}

// end ends a span from span (nil: none), marking an error other than redis.Nil.
func end(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil && err != redis.Nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
