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
	tracer trace.Tracer
	dur    metric.Float64Histogram
	attrs  AttrCache[string]
}

// NewRedisHook returns the hook; add it with client.AddHook.
func NewRedisHook(t *Telemetry) *RedisHook {
	m := t.Meters.Meter("dmgrid/redis")
	dur, _ := m.Float64Histogram("dmgrid_redis_duration_seconds", metric.WithDescription("Redis command and pipeline latency"), metric.WithUnit("s"), LatencySeconds)
	return &RedisHook{tracer: t.Tracers.Tracer("dmgrid/redis"), dur: dur}
}

// DialHook passes through.
func (h *RedisHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

// ProcessHook wraps one command. A span is made only inside a recorded trace (with no
// trace exporter, or outside any traced work, the command is only timed).
func (h *RedisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !trace.SpanFromContext(ctx).IsRecording() {
			start := time.Now()
			err := next(ctx, cmd)
			h.dur.Record(ctx, time.Since(start).Seconds(), h.attrs.Get(cmd.Name(), attribute.String("cmd", cmd.Name())))
			return err
		}
		ctx, span := h.tracer.Start(ctx, "redis "+cmd.Name(), trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system", "redis"), attribute.String("db.operation", cmd.Name())))
		start := time.Now()
		err := next(ctx, cmd)
		h.dur.Record(ctx, time.Since(start).Seconds(), h.attrs.Get(cmd.Name(), attribute.String("cmd", cmd.Name())))
		if err != nil && err != redis.Nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		return err
	}
}

// ProcessPipelineHook wraps one pipeline (one round trip).
func (h *RedisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !trace.SpanFromContext(ctx).IsRecording() {
			start := time.Now()
			err := next(ctx, cmds)
			h.dur.Record(ctx, time.Since(start).Seconds(), h.attrs.Get("pipeline", attribute.String("cmd", "pipeline")))
			return err
		}
		ctx, span := h.tracer.Start(ctx, "redis pipeline", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system", "redis"), attribute.Int("db.commands", len(cmds))))
		start := time.Now()
		err := next(ctx, cmds)
		h.dur.Record(ctx, time.Since(start).Seconds(), h.attrs.Get("pipeline", attribute.String("cmd", "pipeline")))
		if err != nil && err != redis.Nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		return err
	}
}
