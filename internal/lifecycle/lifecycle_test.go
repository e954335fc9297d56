package lifecycle

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/dmgrid/dmgrid/internal/telemetry"
)

type tier struct {
	serving atomic.Bool
	changes atomic.Int32
	bg      func(context.Context) error
}

func (t *tier) Register(*grpc.Server)                {}
func (t *tier) SetServing(ok bool)                   { t.serving.Store(ok); t.changes.Add(1) }
func (t *tier) Background(ctx context.Context) error { return t.bg(ctx) }

func listen(t *testing.T) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func opts() Options {
	return Options{Name: "test", Telemetry: telemetry.Nop(), Log: slog.New(slog.NewTextHandler(io.Discard, nil)), DrainTimeout: time.Second}
}

// A tier serves until ctx ends, then readiness goes off before the background work stops.
func TestDrainThenStopBackground(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &tier{}
	var notServingAtStop atomic.Bool
	tr.bg = func(bctx context.Context) error {
		<-bctx.Done()
		notServingAtStop.Store(!tr.serving.Load())
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- ServeGRPC(ctx, listen(t), tr, opts()) }()
	time.Sleep(50 * time.Millisecond)
	if !tr.serving.Load() {
		t.Fatal("not serving")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("did not stop")
	}
	if !notServingAtStop.Load() || tr.changes.Load() != 2 {
		t.Fatalf("readiness must go off before the background stops (changes %d)", tr.changes.Load())
	}
}

// Background work that fails stops the server and is returned.
func TestBackgroundFailureStops(t *testing.T) {
	tr := &tier{bg: func(context.Context) error { return errors.New("consumer gone") }}
	err := ServeGRPC(context.Background(), listen(t), tr, opts())
	if err == nil || !strings.Contains(err.Error(), "consumer gone") {
		t.Fatalf("got %v", err)
	}
}
