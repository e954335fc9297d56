package api

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	sessionv1 "github.com/dmgrid/dmgrid/proto/dmgrid/session/v1"
	syncmlv1 "github.com/dmgrid/dmgrid/proto/dmgrid/syncml/v1"

	"github.com/dmgrid/dmgrid/pkg/syncml"
	"github.com/dmgrid/dmgrid/pkg/syncmlpb"
	"github.com/dmgrid/dmgrid/services/session/internal/engine"
)

// counts reads a counter from rd: its value per attribute set, keyed "k=v,k=v" in the
// order of the set (attribute sets are sorted by key).
func counts(t *testing.T, rd sdkmetric.Reader, name string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				k := ""
				for _, kv := range dp.Attributes.ToSlice() {
					if k != "" {
						k += ","
					}
					k += string(kv.Key) + "=" + kv.Value.Emit()
				}
				out[k] += dp.Value
			}
		}
	}
	return out
}

// TestEveryMessageCounted: dmgrid_session_messages_total counts every message a worker
// handles, with its outcome: one the engine's Check refuses (outcome "invalid", no Redis
// call) and a challenge refused with HTTP 429 ("rate limited", also an authentication
// failure) besides the ones that reach the engine. Both used to go uncounted.
func TestEveryMessageCounted(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	rd := sdkmetric.NewManualReader()
	s := &Sessions{St: r.st, Engine: engine.New(engine.Config{}), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: fixedNow, ChallengeLimit: 1, ChallengeWindow: time.Minute,
		Metrics: NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd)))}
	send := func(msgID string) *sessionv1.HandleMessageResponse {
		t.Helper()
		m := &syncml.Message{Header: syncml.Header{VerDTD: "1.2", VerProto: "DM/1.2", SessionID: "1", MsgID: msgID,
			Target: syncml.Locator{LocURI: "http://s/dm"}, Source: syncml.Locator{LocURI: "IMEI:unknown-1"}}}
		m.Body.Commands = []syncml.Command{{Kind: syncml.KindAlert, CmdID: "1", Data: "1201"}}
		m.Body.Final = true
		resp, err := s.HandleMessage(ctx, &sessionv1.HandleMessageRequest{Message: syncmlpb.ToProto(m),
			Transport: &sessionv1.Transport{Encoding: syncmlv1.Encoding_ENCODING_XML}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	n0 := r.probe.n.Load()
	if resp := send("x"); resp.GetReply() == nil || resp.HttpStatus != 200 {
		t.Fatalf("invalid message: %v", resp)
	}
	if n := r.probe.n.Load() - n0; n != 0 {
		t.Fatalf("an invalid message made %d Redis round trips", n)
	}
	if resp := send("1"); resp.HttpStatus != 200 { // unknown device: challenged
		t.Fatalf("first challenge: %v", resp)
	}
	if resp := send("2"); resp.HttpStatus != 429 || resp.GetReply() != nil { // over the limit of 1
		t.Fatalf("second challenge: %v", resp)
	}
	got := counts(t, rd, "dmgrid_session_messages_total")
	want := map[string]int64{"encoding=xml,outcome=invalid": 1, "encoding=xml,outcome=unknown device": 1, "encoding=xml,outcome=rate limited": 1}
	if len(got) != len(want) {
		t.Fatalf("messages counted %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("messages counted %v, want %v", got, want)
		}
	}
	if af := counts(t, rd, "dmgrid_session_auth_failures_total"); af[""] != 2 {
		t.Fatalf("authentication failures %v, want 2", af)
	}
}
