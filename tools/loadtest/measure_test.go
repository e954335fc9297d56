package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// The gateway's histogram is summed over label sets and differenced between scrapes; a
// quantile is the upper bound of the first bucket reaching it.
func TestGatewayHistogramQuantiles(t *testing.T) {
	page := ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(page)) }))
	defer srv.Close()
	const a, b = `dmgrid_gateway_message_duration_seconds_bucket{encoding="xml",handle="0.5",status="200",le="`, `dmgrid_gateway_message_duration_seconds_bucket{encoding="wbxml",status="200",le="`
	page = "# TYPE x histogram\n" + a + `0.001"} 10` + "\n" + a + `0.005"} 10` + "\n" + a + `0.01"} 10` + "\n" + a + `+Inf"} 10` + "\n" +
		b + `0.001"} 0` + "\n" + b + `0.005"} 0` + "\n" + b + `0.01"} 0` + "\n" + b + `+Inf"} 0` + "\n" +
		"dmgrid_gateway_message_duration_seconds_sum 1\n"
	before, err := scrapeGatewayHistogram(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if want := []float64{10, 10, 10, 10}; !slices.Equal(before.cum, want) {
		t.Fatalf("before: %v %v", before.le, before.cum)
	}
	// 100 more messages: 50 under 1 ms (xml), 49 in (1, 5] ms, 1 in (5, 10] ms (wbxml).
	page = a + `0.001"} 60` + "\n" + a + `0.005"} 60` + "\n" + a + `0.01"} 60` + "\n" + a + `+Inf"} 60` + "\n" +
		b + `0.001"} 0` + "\n" + b + `0.005"} 49` + "\n" + b + `0.01"} 50` + "\n" + b + `+Inf"} 50` + "\n"
	after, err := scrapeGatewayHistogram(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	q, n, ok := after.quantiles(before, 0.5, 0.99, 1)
	if !ok || n != 100 || !slices.Equal(q, []float64{1, 5, 10}) {
		t.Fatalf("quantiles %v over %v (ok %v), want [1 5 10] over 100", q, n, ok)
	}
	if _, _, ok := before.quantiles(before); ok {
		t.Error("no messages between two equal scrapes, yet quantiles")
	}
}
