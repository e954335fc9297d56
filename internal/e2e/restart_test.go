package e2e

import (
	"context"
	"errors"
	"fmt"
	"google.golang.org/grpc"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"
	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/pkg/events"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// pacedTransport counts successful posts and, when every is set, holds posts to at most
// one per every (so that the load outlasts the restarts on a fast machine).
type pacedTransport struct {
	dmsim.Transport
	every  time.Duration
	mu     sync.Mutex
	next   time.Time
	posts  atomic.Int64 // answered with HTTP 200
	failed atomic.Int64 // transport errors and HTTP errors (the device retries)
	kmu    sync.Mutex
	kinds  map[string]int // failures by kind
}

func (p *pacedTransport) Post(ctx context.Context, url string, body []byte, ct, h string) ([]byte, string, error) {
	if p.every > 0 {
		p.mu.Lock()
		now := time.Now()
		if p.next.Before(now) {
			p.next = now
		}
		wait := p.next.Sub(now)
		p.next = p.next.Add(p.every)
		p.mu.Unlock()
		if wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return nil, "", ctx.Err()
			}
		}
	}
	b, rct, err := p.Transport.Post(ctx, url, body, ct, h)
	if err != nil {
		p.failed.Add(1)
		kind := "transport"
		var he *dmsim.HTTPError
		if errors.As(err, &he) {
			kind = he.Status
		} else if strings.Contains(err.Error(), "connection refused") {
			kind = "connection refused"
		} else if strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "reset") {
			kind = "connection closed"
		}
		p.kmu.Lock()
		if p.kinds == nil {
			p.kinds = map[string]int{}
		}
		p.kinds[kind]++
		p.kmu.Unlock()
	} else {
		p.posts.Add(1)
	}
	return b, rct, err
}

// TestRollingRestart restarts one session worker, then the gateway, then the other worker,
// each gracefully, while a fleet holds sessions (XML and WBXML, MD5, HMAC and basic auth).
// Devices ride through on their own retries (transport errors and 503 re-POST the same
// message); every session must end normally and every command must be completed exactly
// once: one attempt, and one command_state_changed COMPLETED event in JetStream.
func TestRollingRestart(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 100
	}
	st := Start(t, Options{Workers: 2, LameDuck: 150 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	auths := []dmauth.Type{dmauth.TypeMD5, dmauth.TypeMAC, dmauth.TypeBasic}
	fleet := dmsim.NewFleet(n, 20240601, dmsim.Config{ServerURL: st.URL}, func(i int, c *dmsim.Config) {
		c.AuthType = auths[i%len(auths)]
		c.ClientName = fmt.Sprintf("roll-%d", i)
		c.ClientSecret = fmt.Sprintf("roll-secret-%d", i)
		if i%2 == 1 {
			c.Encoding = syncml.EncodingWBXML
		}
	})
	ids := make([][]string, n) // command ids per device
	var wg sync.WaitGroup
	errc := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i, d := range fleet.Devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			cfg := d.Config()
			if _, err := st.Devices.CreateDevice(ctx, &devicev1.CreateDeviceRequest{Device: &devicev1.Device{DeviceId: cfg.DevID,
				ClientAuth: &devicev1.AuthConfig{Type: authTypes[cfg.AuthType], Name: cfg.ClientName, Secret: cfg.ClientSecret}}}); err != nil {
				errc <- fmt.Errorf("create %s: %w", cfg.DevID, err)
				return
			}
			r, err := st.Commands.EnqueueCommands(ctx, &commandv1.EnqueueCommandsRequest{DeviceId: cfg.DevID,
				Operations: []*commandv1.Operation{get("./DevDetail/FwV"), replace("./FUMO/FwPkg1/PkgName", []byte("v2"))}})
			if err != nil {
				errc <- fmt.Errorf("enqueue %s: %w", cfg.DevID, err)
				return
			}
			for _, c := range r.Commands {
				ids[i] = append(ids[i], c.CommandId)
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}

	// A first session is 3 posts (Pkg1 challenged for want of a nonce, Pkg1, Pkg3), 2 with
	// basic auth. Paced to at most 250 posts/s so the load lasts ≥ 3 s even where the stack
	// is much faster than that, and the three restarts happen while sessions are running.
	var expected int64
	for _, d := range fleet.Devices {
		expected += 3
		if d.Config().AuthType == dmauth.TypeBasic {
			expected--
		}
	}
	pt := &pacedTransport{
		Transport: &dmsim.HTTPTransport{Client: &http.Client{Timeout: 30 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 32, IdleConnTimeout: time.Minute}}},
		every: 4 * time.Millisecond,
	}
	// Linear backoff: retry k waits k×25ms, 40 retries wait up to 20 s in all; a worker the
	// gateway reconnects to after gRPC's first 1 s backoff needs far less.
	opt := dmsim.SessionOptions{MaxTransportRetries: 40, RetryBackoff: 25 * time.Millisecond}
	var results []dmsim.FleetResult
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		results = fleet.Run(ctx, pt, 32, opt)
	}()

	// The restarts, each once the load has progressed past a mark; after each, the load
	// must make progress again before the next.
	waitPosts := func(atLeast int64) bool {
		for pt.posts.Load() < atLeast {
			select {
			case <-loadDone:
				return false
			case <-time.After(5 * time.Millisecond):
			}
		}
		return true
	}
	type step struct {
		name string
		at   float64
		do   func() error
	}
	steps := []step{
		{"worker 0", 0.10, func() error { return st.RestartWorker(0) }},
		{"gateway", 0.35, func() error { return restartGatewayCheckingReadiness(st) }},
		{"worker 1", 0.60, func() error { return st.RestartWorker(1) }},
	}
	var after []int64 // posts when each restart had finished
	for _, s := range steps {
		if !waitPosts(int64(s.at * float64(expected))) {
			t.Fatalf("the load ended before the %s restart (%d posts)", s.name, pt.posts.Load())
		}
		start := time.Now()
		if err := s.do(); err != nil {
			t.Fatalf("restart %s: %v", s.name, err)
		}
		t.Logf("restarted %s in %v at %d/%d posts", s.name, time.Since(start).Round(time.Millisecond), pt.posts.Load(), expected)
		after = append(after, pt.posts.Load())
	}
	<-loadDone
	last := after[len(after)-1]
	if total := pt.posts.Load(); total <= last {
		t.Fatalf("no post succeeded after the last restart (%d posts in all)", total)
	}

	var retries int
	for _, r := range results {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Device.DevID(), r.Err)
		}
		if !r.Report.Ended || r.Report.Aborted {
			t.Fatalf("%s: session did not end normally: %s", r.Device.DevID(), r.Report.Summary())
		}
		if len(r.Report.Warnings) > 0 {
			t.Fatalf("%s: protocol warnings: %v", r.Device.DevID(), r.Report.Warnings)
		}
		retries += r.Report.Retransmissions
	}
	t.Logf("%d sessions, %d posts answered, %d failed posts %v, %d re-POSTs", n, pt.posts.Load(), pt.failed.Load(), pt.kinds, retries)

	// The gateway reconnected to both new workers: both take messages again.
	w0, w1 := st.Workers[0], st.Workers[1]
	idle := dmsim.NewFleet(8, 99, dmsim.Config{ServerURL: st.URL}, func(i int, c *dmsim.Config) {
		c.AuthType, c.ClientName, c.ClientSecret = dmauth.TypeBasic, fmt.Sprintf("probe-%d", i), "probe-secret"
	})
	for _, d := range idle.Devices {
		cfg := d.Config()
		if _, err := st.Devices.CreateDevice(ctx, &devicev1.CreateDeviceRequest{Device: &devicev1.Device{DeviceId: cfg.DevID,
			ClientAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_BASIC, Name: cfg.ClientName, Secret: cfg.ClientSecret}}},
			// The API client may not have reconnected to the restarted worker yet.
			grpc.WaitForReady(true)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, func() bool {
		idle.Run(ctx, pt, 4, opt)
		return w0.Sessions.Handled.Load() > 0 && w1.Sessions.Handled.Load() > 0
	}, "both restarted workers to handle messages")

	// Every command completed, once.
	want := map[string]bool{}
	for _, dev := range ids {
		for _, id := range dev {
			want[id] = true
			c := command(t, st, id)
			if c.State != commandv1.Command_STATE_COMPLETED || c.Attempts != 1 {
				t.Fatalf("%s (%s) = %v after %d attempts", id, c.Operation.TargetUri, c.State, c.Attempts)
			}
		}
	}
	if len(want) != 2*n {
		t.Fatalf("%d command ids for %d devices", len(want), n)
	}
	completed := completedEvents(t, st, len(want))
	for id := range want {
		if completed[id] != 1 {
			t.Fatalf("command %s has %d COMPLETED events, want 1", id, completed[id])
		}
	}
	for id, k := range completed {
		if !want[id] {
			t.Fatalf("COMPLETED event for unknown command %s (%d)", id, k)
		}
	}
}

// restartGatewayCheckingReadiness stops the gateway, checking that /readyz fails during the
// lame-duck period while the DM endpoint still answers, and starts a new one.
func restartGatewayCheckingReadiness(st *Stack) error {
	base := strings.TrimSuffix(st.URL, "/dm")
	stopped := make(chan error, 1)
	go func() { stopped <- st.StopGateway() }()
	sawNotReady := false
	for !sawNotReady {
		select {
		case err := <-stopped:
			return fmt.Errorf("the gateway stopped without /readyz failing first (stop: %v)", err)
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			sawNotReady = resp.StatusCode == http.StatusServiceUnavailable
		}
		if !sawNotReady {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := <-stopped; err != nil {
		return err
	}
	return st.StartGateway()
}

// completedEvents counts command_state_changed events with state COMPLETED per command id
// in the events stream, waiting (bounded) until at least want commands have one: the outbox
// relays publish asynchronously, and a stopped worker's leftovers are picked up by the
// other's periodic scan. JetStream drops relay duplicates (Nats-Msg-Id), so a command
// completed twice by the engine would show as two events.
func completedEvents(t *testing.T, st *Stack, want int) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(st.NC)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, events.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectRoot + ".command_state_changed.>"}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	quiet := 0
	for quiet < 2 { // stop after two empty fetches once everything arrived
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		k := 0
		for m := range batch.Messages() {
			k++
			var ev eventsv1.Event
			if err := proto.Unmarshal(m.Data(), &ev); err != nil {
				t.Fatal(err)
			}
			if c := ev.GetCommandStateChanged().GetCommand(); c.GetState() == commandv1.Command_STATE_COMPLETED {
				got[c.GetCommandId()]++
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
		switch {
		case k > 0:
			quiet = 0
		case len(got) >= want:
			quiet++
		case ctx.Err() != nil:
			t.Fatalf("only %d of %d commands have a COMPLETED event", len(got), want)
		}
	}
	return got
}
