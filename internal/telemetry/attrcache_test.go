package telemetry

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestAttrCache: measurements recorded through cached options carry their attributes, one
// series per key, and the cache stays bounded.
func TestAttrCache(t *testing.T) {
	rd := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd))
	ctr, err := mp.Meter("t").Int64Counter("c")
	if err != nil {
		t.Fatal(err)
	}
	var c AttrCache[[2]string]
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		ctr.Add(ctx, 1, c.Get([2]string{"xml", "ok"}, attribute.String("encoding", "xml"), attribute.String("outcome", "ok")))
	}
	ctr.Add(ctx, 5, c.Get([2]string{"wbxml", "ok"}, attribute.String("encoding", "wbxml"), attribute.String("outcome", "ok")))
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				enc, _ := dp.Attributes.Value("encoding")
				out, _ := dp.Attributes.Value("outcome")
				got[enc.AsString()+"/"+out.AsString()] = dp.Value
			}
		}
	}
	if len(got) != 2 || got["xml/ok"] != 3 || got["wbxml/ok"] != 5 {
		t.Fatalf("series %v, want xml/ok=3 wbxml/ok=5", got)
	}
	for i := 0; i < MaxAttrCache+10; i++ {
		c.Get([2]string{"k", string(rune('a'+i%26)) + string(rune(i))}, attribute.Int("i", i))
	}
	held := 0
	c.m.Range(func(any, any) bool { held++; return true })
	if held > MaxAttrCache {
		t.Fatalf("cache holds %d keys, bound %d", held, MaxAttrCache)
	}
}
