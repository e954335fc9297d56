package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// latencies collects one duration per HTTP round trip.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// percentiles returns p50, p95, p99 in milliseconds (nearest rank).
func (l *latencies) percentiles() (p50, p95, p99 float64) {
	l.mu.Lock()
	d := slices.Clone(l.d)
	l.mu.Unlock()
	if len(d) == 0 {
		return 0, 0, 0
	}
	slices.Sort(d)
	at := func(p float64) float64 {
		i := int(p*float64(len(d))+0.999999) - 1
		i = max(0, min(i, len(d)-1))
		return float64(d[i]) / float64(time.Millisecond)
	}
	return at(0.50), at(0.95), at(0.99)
}

// sample is one request body, kept for the ceiling run.
type sample struct {
	body []byte
	ct   string
}

// meter wraps the transport the simulated devices use: it times every HTTP round trip,
// counts answered and failed posts, optionally paces posts to a rate (the pause before a
// post is not part of its latency), and keeps up to keep request bodies for the ceiling.
type meter struct {
	inner dmsim.Transport
	lat   *latencies
	ok    atomic.Int64
	fail  atomic.Int64

	every time.Duration // 0: unpaced
	pmu   sync.Mutex
	next  time.Time

	keep    int
	smu     sync.Mutex
	samples []sample
}

func (m *meter) Post(ctx context.Context, url string, body []byte, ct, hmac string) ([]byte, string, error) {
	if m.every > 0 {
		m.pmu.Lock()
		now := time.Now()
		if m.next.Before(now) {
			m.next = now
		}
		wait := m.next.Sub(now)
		m.next = m.next.Add(m.every)
		m.pmu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, "", ctx.Err()
			}
		}
	}
	if m.keep > 0 {
		m.smu.Lock()
		if len(m.samples) < m.keep {
			m.samples = append(m.samples, sample{body: slices.Clone(body), ct: ct})
		}
		m.smu.Unlock()
	}
	start := time.Now()
	b, rct, err := m.inner.Post(ctx, url, body, ct, hmac)
	if err != nil {
		m.fail.Add(1)
		return b, rct, err
	}
	m.lat.add(time.Since(start))
	m.ok.Add(1)
	return b, rct, nil
}

// gate holds a device's session open: once a reply carries server commands (the session
// is open with commands sent), the device's next post waits until release is closed.
type gate struct {
	inner   dmsim.Transport
	release <-chan struct{}
	held    *atomic.Int64
	armed   bool
	key     *string // set to the session key once armed
	prefix  string
}

func (g *gate) Post(ctx context.Context, url string, body []byte, ct, hmac string) ([]byte, string, error) {
	if g.armed {
		g.armed = false
		g.held.Add(1)
		select {
		case <-g.release:
		case <-ctx.Done():
			return nil, "", ctx.Err()
		}
	}
	b, rct, err := g.inner.Post(ctx, url, body, ct, hmac)
	if err != nil || *g.key != "" {
		return b, rct, err
	}
	if m, _, derr := syncml.Decode(b, syncml.ParseContentType(rct), syncml.Limits{}); derr == nil {
		for _, c := range m.Body.Commands {
			if c.Kind == syncml.KindGet || c.Kind == syncml.KindReplace {
				g.armed = true
				*g.key = g.prefix + ":{d:" + m.Header.Target.LocURI + "}:s:" + m.Header.SessionID
				break
			}
		}
	}
	return b, rct, err
}

// rtHook counts Redis round trips of the session workers' clients: one per command sent
// alone, one per pipeline. A command issued while serving a gRPC call is attributed to
// that method; the rest (the outbox relay) to "background".
type rtHook struct {
	mu     sync.Mutex
	total  int64
	byKind map[string]int64 // "<method or background> <command>"
	// scrape, when set (-processes, -split), replaces the in-process counts: round trips
	// as "<HandleMessage|background> <command>" from the services' processes.
	scrape func() map[string]int64
}

func newRTHook() *rtHook { return &rtHook{byKind: map[string]int64{}} }

func (h *rtHook) count(ctx context.Context, name string) {
	who := "background"
	if m, ok := grpc.Method(ctx); ok {
		who = m[strings.LastIndexByte(m, '/')+1:]
	}
	h.mu.Lock()
	h.total++
	h.byKind[who+" "+name]++
	h.mu.Unlock()
}

func (h *rtHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h *rtHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count(ctx, cmd.Name())
		return next(ctx, cmd)
	}
}

func (h *rtHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.count(ctx, "pipeline")
		return next(ctx, cmds)
	}
}

type rtSnap struct {
	total  int64
	byKind map[string]int64
}

func (h *rtHook) snap() rtSnap {
	if h.scrape != nil {
		m := h.scrape()
		var total int64
		for _, n := range m {
			total += n
		}
		return rtSnap{total, m}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	m := make(map[string]int64, len(h.byKind))
	for k, v := range h.byKind {
		m[k] = v
	}
	return rtSnap{h.total, m}
}

// since returns the round trips after s: total, those made while handling a device
// message (HandleMessage), and a breakdown.
func (h *rtHook) since(s rtSnap) (total, inRequest int64, breakdown map[string]int64) {
	now := h.snap()
	breakdown = map[string]int64{}
	for k, v := range now.byKind {
		if d := v - s.byKind[k]; d > 0 {
			breakdown[k] = d
			if strings.HasPrefix(k, "HandleMessage ") {
				inRequest += d
			}
		}
	}
	return now.total - s.total, inRequest, breakdown
}

// quiesce waits (bounded) until the hook saw no round trip for quiet: the outbox relays
// have published what the last messages committed.
func (h *rtHook) quiesce(quiet, within time.Duration) {
	deadline := time.Now().Add(within)
	last, since := h.snap().total, time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(25 * time.Millisecond)
		if n := h.snap().total; n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= quiet {
			return
		}
	}
}

// info reads numeric fields of INFO sections.
func info(ctx context.Context, rdb *redis.Client, section string) (map[string]float64, error) {
	s, err := rdb.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[k] = f
		}
	}
	return out, nil
}

// usedMemory is INFO memory used_memory without the client connections' buffers
// (mem_clients_normal/slaves): the workers' connection pools grow with concurrency, which
// says nothing about what a device or a session costs.
func usedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	m, err := info(ctx, rdb, "memory")
	if err != nil {
		return 0, err
	}
	return int64(m["used_memory"] - m["mem_clients_normal"] - m["mem_clients_slaves"]), nil
}

// redisCPU is redis-server's CPU time so far.
func redisCPU(ctx context.Context, rdb *redis.Client) time.Duration {
	m, err := info(ctx, rdb, "cpu")
	if err != nil {
		return 0
	}
	return time.Duration((m["used_cpu_sys"] + m["used_cpu_user"]) * float64(time.Second))
}

// progress draws a bar on stderr: redrawn in place on a terminal, a line every few
// seconds otherwise.
type progress struct {
	label string
	total int64
	done  atomic.Int64
	extra func() string
	stop  chan struct{}
	wg    sync.WaitGroup
	start time.Time
}

var stderrIsTTY = func() bool {
	fi, err := os.Stderr.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}()

func startProgress(label string, total int, extra func() string) *progress {
	p := &progress{label: label, total: int64(total), extra: extra, stop: make(chan struct{}), start: time.Now()}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		every := 2 * time.Second
		if stderrIsTTY {
			every = 150 * time.Millisecond
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				p.draw(os.Stderr, true)
				return
			case <-t.C:
				p.draw(os.Stderr, false)
			}
		}
	}()
	return p
}

func (p *progress) draw(w io.Writer, final bool) {
	const width = 30
	done := p.done.Load()
	frac := 1.0
	if p.total > 0 {
		frac = float64(done) / float64(p.total)
	}
	n := int(frac * width)
	bar := strings.Repeat("=", n)
	if n < width {
		bar += ">" + strings.Repeat(" ", width-n-1)
	}
	line := fmt.Sprintf("%-22s [%s] %d/%d %5.1fs", p.label, bar, done, p.total, time.Since(p.start).Seconds())
	if p.extra != nil {
		line += "  " + p.extra()
	}
	switch {
	case stderrIsTTY && final:
		fmt.Fprintf(w, "\r\033[K%s\n", line)
	case stderrIsTTY:
		fmt.Fprintf(w, "\r\033[K%s", line)
	default:
		fmt.Fprintln(w, line)
	}
}

func (p *progress) finish() {
	close(p.stop)
	p.wg.Wait()
}

// cmdStat is one line of INFO commandstats.
type cmdStat struct{ calls, usec int64 }

// commandStats is INFO commandstats by command. A script's usec includes the commands it
// runs, which are also listed on their own.
func commandStats(ctx context.Context, rdb *redis.Client) map[string]cmdStat {
	s, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil
	}
	out := map[string]cmdStat{}
	for _, l := range strings.Split(s, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(l), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var st cmdStat
		for _, f := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(f, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "usec":
				st.usec = n
			case "calls":
				st.calls = n
			}
		}
		out[strings.TrimPrefix(name, "cmdstat_")] = st
	}
	return out
}

// gatewayHistogram is the gateway's dmgrid_gateway_message_duration_seconds histogram as
// scraped from its /metrics: cumulative counts per upper bound (summed over label sets).
type gatewayHistogram struct {
	le  []float64 // ascending, +Inf last
	cum []float64
}

// scrapeSeries reads a Prometheus text endpoint and calls each for every sample of the
// series name (with labels), passing a lookup of its label values and its value.
func scrapeSeries(ctx context.Context, url, name string, each func(label func(string) string, v float64)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		labels, ok := strings.CutPrefix(l, name+"{")
		if !ok {
			continue
		}
		labels, val, ok := strings.Cut(labels, "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(val + " 0")[0], 64)
		if err != nil {
			return fmt.Errorf("bad sample %q", l)
		}
		each(func(k string) string {
			// k="value" at the start or after a comma (not the end of another label's name).
			for rest := labels; ; {
				i := strings.Index(rest, k+`="`)
				if i < 0 {
					return ""
				}
				if i == 0 || rest[i-1] == ',' {
					v, _, _ := strings.Cut(rest[i+len(k)+2:], `"`)
					return v
				}
				rest = rest[i+1:]
			}
		}, v)
	}
	return sc.Err()
}

// scrapeGatewayHistogram reads the histogram from a Prometheus text endpoint.
func scrapeGatewayHistogram(ctx context.Context, url string) (gatewayHistogram, error) {
	sum := map[float64]float64{}
	var bad error
	err := scrapeSeries(ctx, url, "dmgrid_gateway_message_duration_seconds_bucket", func(label func(string) string, n float64) {
		b, err := strconv.ParseFloat(label("le"), 64) // "+Inf" parses as +Inf
		if err != nil {
			bad = fmt.Errorf("bucket bound %q", label("le"))
			return
		}
		sum[b] += n
	})
	if err = errors.Join(err, bad); err != nil {
		return gatewayHistogram{}, err
	}
	var h gatewayHistogram
	for b := range sum {
		h.le = append(h.le, b)
	}
	slices.Sort(h.le)
	for _, b := range h.le {
		h.cum = append(h.cum, sum[b])
	}
	return h, nil
}

// quantiles of the messages observed between two scrapes (after minus before), as the
// upper bounds of the buckets holding them (the histogram's resolution), in ms; ok is false
// when nothing was observed or the bucket bounds differ.
func (after gatewayHistogram) quantiles(before gatewayHistogram, qs ...float64) (out []float64, n float64, ok bool) {
	if len(after.le) == 0 || (len(before.le) > 0 && !slices.Equal(before.le, after.le)) {
		return nil, 0, false
	}
	d := slices.Clone(after.cum)
	if len(before.cum) > 0 {
		for i := range d {
			d[i] -= before.cum[i]
		}
	}
	n = d[len(d)-1]
	if n <= 0 {
		return nil, 0, false
	}
	for _, q := range qs {
		for i, c := range d {
			if c >= q*n {
				out = append(out, 1000*after.le[i])
				break
			}
		}
	}
	return out, n, true
}
