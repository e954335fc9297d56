// Command loadtest measures dmgrid on one machine: a gateway, session workers, a real
// redis-server (started on a free loopback port) and embedded NATS with JetStream, driven
// by simulated devices (pkg/dmsim) holding complete DM sessions over loopback HTTP.
//
// Phases: provision the devices through the DeviceService (Redis memory per device);
// a warm-up session per device (the first session of a device is challenged for want of
// a nonce; after it every session is Pkg1 → Get DevDetail + Replace → Pkg3 → end); the
// peak run (unthrottled, -concurrency sessions at a time: sessions/s, messages/s, latency
// per HTTP round trip, Redis round trips per message); the ceiling (a bare net/http handler
// echoing the same request bodies, same load generator and concurrency); the half-peak run
// (messages paced to 50% of the peak rate) and, as its control, the echo handler paced the
// same way; live sessions held open (Redis memory per session); with -grow-to, idle
// devices registered up to that many and the peak and the ceiling run again (throughput
// flatness as the registry grows, in the same run); then every command is checked to be
// completed exactly once.
//
// The last line is machine-readable:
//
//	RESULT sessions_per_s=… msgs_per_s=… ceiling_per_s=… ratio=… p50_ms=… p99_ms=… redis_rt_per_msg=… errors=… …
//
// Goals (reported, not asserted): messages/s ≥ 25% of the ceiling, p99 < 10 ms at half of
// peak, ≤ 2 Redis round trips per message, Redis memory < 2 KiB per idle device and
// < 16 KiB per live session.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"

	"github.com/dmgrid/dmgrid/internal/e2e"
	"github.com/dmgrid/dmgrid/internal/gctune"
	"github.com/dmgrid/dmgrid/internal/testredis"
	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

type config struct {
	devices      int
	registered   int
	growTo       int
	flatRounds   int
	concurrency  int
	provisionC   int
	workers      int
	half         bool
	halfFraction float64
	live         int
	ceilingMin   time.Duration
	timeout      time.Duration
	seed         uint64
	verbose      bool
	cpuProfile   string
	processes    bool
	split        bool
	serve        bool
	serveRedis   string
	serveNATS    string
	echoURL      string // the echo handler to use for the ceiling ("" starts one here)
	profileFor   time.Duration
	memProfile   string
	traceFile    string
	outboxLinger time.Duration
}

func main() {
	var c config
	flag.IntVar(&c.devices, "devices", 2000, "simulated devices holding sessions")
	flag.IntVar(&c.registered, "registered", 0, "extra idle devices registered (no sessions), to check that throughput stays flat as registered devices grow")
	flag.IntVar(&c.growTo, "grow-to", 0, "after the other phases, register idle devices until this many devices are registered in all, and run the peak and the ceiling again: throughput flatness as the registry grows, in one run (0 skips)")
	flag.IntVar(&c.flatRounds, "flat-rounds", 3, "with -grow-to: peak runs at each registry size (medians are compared)")
	flag.IntVar(&c.concurrency, "concurrency", 64, "sessions in flight at a time (also the ceiling's concurrency)")
	flag.IntVar(&c.provisionC, "provision-concurrency", 64, "concurrent DeviceService/CommandService calls while provisioning")
	flag.IntVar(&c.workers, "workers", 2, "session workers")
	flag.BoolVar(&c.half, "half", true, "also run at a fraction (-half-fraction) of the measured peak message rate and report its latency")
	flag.Float64Var(&c.halfFraction, "half-fraction", 0.5, "rate of the paced run as a fraction of the peak message rate")
	flag.IntVar(&c.live, "live", 500, "sessions held open at once to measure Redis memory per live session (0 skips; at most -devices)")
	flag.DurationVar(&c.ceilingMin, "ceiling-min", 3*time.Second, "shortest ceiling run (it lasts at least as long as the peak run)")
	flag.DurationVar(&c.timeout, "timeout", 15*time.Minute, "bound on the whole run")
	flag.Uint64Var(&c.seed, "seed", 1, "fleet seed (device ids, models, firmware)")
	flag.BoolVar(&c.verbose, "v", false, "services' warnings and errors on stderr")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the peak run (this process: the services and simulated devices, or with -processes the load generator and, in <file>.<process>, each service) to this file")
	flag.BoolVar(&c.processes, "processes", false, "run the gateway, the session workers and nats-server as separate processes (built with go build from this checkout), as in production, instead of in this process")
	flag.BoolVar(&c.split, "split", true, "run the services (gateway and session workers) in one child process, nats-server in another (built from go.mod's version) and the simulated devices in this one, so that neither the load generator's nor NATS's heap and goroutines share the services' runtime; -split=false runs everything, NATS embedded, in this process")
	flag.BoolVar(&c.serve, "serve", false, "internal: be the services process of -split")
	flag.StringVar(&c.serveRedis, "serve-redis", "", "internal: the Redis URL of -serve")
	flag.StringVar(&c.serveNATS, "serve-nats", "", "internal: the NATS URL of -serve")
	flag.DurationVar(&c.profileFor, "profile-for", 2*time.Second, "with -processes and -cpuprofile: how long to profile each service process from the start of the peak (files <cpuprofile>.<process>)")
	flag.StringVar(&c.memProfile, "memprofile", "", "write an allocation profile (whole process, up to the end of the peak run) to this file")
	flag.DurationVar(&c.outboxLinger, "outbox-linger", 0, "the session workers' DMGRID_OUTBOX_LINGER")
	flag.StringVar(&c.traceFile, "trace", "", "write a runtime execution trace of the paced run to this file (go tool trace)")
	flag.Parse()
	switch {
	case c.devices < 1 || c.devices > 1_000_000:
		fail("-devices must be between 1 and 1,000,000")
	case c.registered < 0 || c.registered > 10_000_000:
		fail("-registered must be between 0 and 10,000,000")
	case c.concurrency < 1 || c.concurrency > 10_000 || c.provisionC < 1 || c.provisionC > 1000:
		fail("-concurrency must be 1..10000 and -provision-concurrency 1..1000")
	case c.workers < 1 || c.workers > 16:
		fail("-workers must be between 1 and 16")
	case c.halfFraction <= 0 || c.halfFraction > 1:
		fail("-half-fraction must be in (0, 1]")
	case c.live < 0:
		fail("-live must not be negative")
	case c.growTo != 0 && (c.growTo <= c.devices+c.registered || c.growTo > 10_000_000):
		fail("-grow-to must exceed -devices + -registered and be at most 10,000,000")
	case c.flatRounds < 1 || c.flatRounds > 20:
		fail("-flat-rounds must be between 1 and 20")
	}
	c.live = min(c.live, c.devices)
	if c.processes {
		c.split = false
	}
	pprofOn = c.cpuProfile != ""
	// The services' garbage-collector settings (the binaries apply the same in main): the
	// whole system runs in this process unless -processes.
	gcSettings = gctune.Apply()
	if c.serve {
		os.Exit(serve(c))
	}
	os.Exit(run(c))
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "loadtest: "+msg)
	os.Exit(2)
}

// gcCPU returns the Go runtime's estimate of CPU seconds spent in garbage collection and
// in all (runtime/metrics).
func gcCPU() (gc, total float64) {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/cpu/classes/total:cpu-seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64 || s[1].Value.Kind() != metrics.KindFloat64 {
		return 0, 0
	}
	return s[0].Value.Float64(), s[1].Value.Float64()
}

var gcSettings gctune.Settings

// otherCPU is the CPU time of the services' processes (-split, -processes), so that the
// echo ceiling's CPU per message counts both sides as it does in one process.
var otherCPU = func() time.Duration { return 0 }

func gogc() string {
	return fmt.Sprintf("%d (%s)", gcSettings.GCPercent, map[string]string{"default": "dmgrid's default", "GOGC": "from GOGC"}[gcSettings.GCFrom])
}

// rusageCPU is this process's CPU time so far (gateway, workers, NATS and load generator).
func rusageCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func newHTTPClient(conns int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy:               nil, // loopback only
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
}

var authTypes = map[dmauth.Type]devicev1.AuthType{
	dmauth.TypeBasic: devicev1.AuthType_AUTH_TYPE_BASIC,
	dmauth.TypeMD5:   devicev1.AuthType_AUTH_TYPE_MD5,
	dmauth.TypeMAC:   devicev1.AuthType_AUTH_TYPE_HMAC,
}

// report is everything the run measured.
type report struct {
	errors []string

	provisionDur time.Duration
	memPerDevice float64

	peakSessions    int
	peakMsgs        int64
	peakFailed      int64
	peakDur         time.Duration
	p50, p95, p99   float64
	rtTotal         int64
	rtRequest       int64
	rtBreakdown     map[string]int64
	cpuProc         time.Duration
	cpuRedis        time.Duration
	redisCmds       map[string]cmdStat
	gcShare         float64
	tierCPU         map[string]time.Duration // -processes: CPU of each tier's processes during the peak
	ceilingPerS     float64
	ceilP50         float64
	ceilP99         float64
	ceilCPU         time.Duration
	ceilMsgs        int64
	halfTarget      float64
	halfAchieved    float64
	halfP50         float64
	halfP95         float64
	halfP99         float64
	halfGwP50       float64 // the gateway's histogram: bucket upper bounds, ms
	halfGwP99       float64
	halfGwN         float64
	halfFailed      int64
	echoPacedRate   float64
	echoPacedP50    float64
	echoPacedP99    float64
	liveHeld        int
	memPerLive      float64
	memDeltaPerLive float64
	liveKeySamples  []int64
	cmdsChecked     int

	flatBefore     int
	flatRateBefore float64
	flatP99Before  float64
	flatCeilBefore float64
	growTotal      int
	growDur        time.Duration
	growMem        float64
	growPeakRate   float64
	growP99        float64
	growCeiling    float64
	growRTRequest  float64
}

func (r *report) errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func run(c config) int {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	ctx, stopSig := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSig()

	logw, log := loggers(c.verbose)
	env := e2e.NewEnv("loadtest", logw)
	defer env.Close()

	redisURL, stopRedis, err := testredis.StartServer("")
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadtest: %v (install redis-server)\n", err)
		return 1
	}
	env.Cleanup(stopRedis)
	ropt, _ := redis.ParseURL(redisURL)
	rdb := redis.NewClient(ropt) // for INFO and MEMORY USAGE; not counted
	env.Cleanup(func() { rdb.Close() })
	hook := newRTHook()
	var st *target
	var ps *procStack
	var gwMetrics string // the gateway's /metrics, for its own view of message latency
	if c.processes || c.split {
		if c.processes {
			ps, err = startProcesses(ctx, c, redisURL, "lt", logw)
		} else {
			ps, err = startSplit(ctx, c, redisURL, logw)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "loadtest: %v\n", err)
			return 1
		}
		env.Cleanup(ps.stop)
		st, hook.scrape, c.echoURL = &ps.target, ps.redisRoundTrips, ps.echoURL
		gwMetrics = ps.gatewayMetrics()
		otherCPU = func() time.Duration {
			var d time.Duration
			for _, v := range ps.cpu() {
				d += v
			}
			return d
		}
	} else {
		es, gwTel, err := startServices(env, c, redisURL, "", hook, log)
		if err != nil {
			fmt.Fprintf(os.Stderr, "loadtest: %v\n", err)
			return 1
		}
		if u, stop, err := serveHTTP(gwTel.MetricsHandler()); err == nil {
			env.Cleanup(stop)
			gwMetrics = u + "/metrics"
		}
		st = &target{URL: es.URL, Prefix: es.Prefix, Devices: es.Devices, Commands: es.Commands}
	}

	redisVersion := "?"
	if m, err := rdb.Info(ctx, "server").Result(); err == nil {
		for _, l := range strings.Split(m, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
				redisVersion = v
			}
		}
	}
	fmt.Printf("dmgrid load test: %d devices (+%d registered idle), concurrency %d, %d session workers, redis-server %s, GOMAXPROCS %d, %s\n",
		c.devices, c.registered, c.concurrency, c.workers, redisVersion, runtime.GOMAXPROCS(0), runtime.Version())

	rep := &report{}
	auths := []dmauth.Type{dmauth.TypeMD5, dmauth.TypeMAC, dmauth.TypeBasic}
	fleet := dmsim.NewFleet(c.devices, c.seed, dmsim.Config{ServerURL: st.URL}, func(i int, dc *dmsim.Config) {
		dc.AuthType = auths[i%len(auths)]
		dc.ClientName = fmt.Sprintf("lt-%d", i)
		dc.ClientSecret = fmt.Sprintf("lt-secret-%d", i)
		if i%2 == 1 {
			dc.Encoding = syncml.EncodingWBXML
		}
	})
	devs := fleet.Devices

	if err := provision(ctx, c, st, rdb, devs, rep); err != nil {
		return abort(rep, err)
	}

	client := newHTTPClient(max(c.concurrency, c.live))
	httpTr := &dmsim.HTTPTransport{Client: client}
	opt := dmsim.SessionOptions{MaxTransportRetries: 5, RetryBackoff: 50 * time.Millisecond}

	// Warm-up: each device's first session is challenged (the device has no nonce yet);
	// afterwards sessions are the steady-state two messages.
	warm := &meter{inner: httpTr, lat: &latencies{}}
	if _, err := runSessions(ctx, "warm-up sessions", devs, c.concurrency, func(int) dmsim.Transport { return warm }, opt, rep, warm); err != nil {
		return abort(rep, err)
	}

	// Peak.
	if err := enqueueAll(ctx, c, st, devs, "enqueue (peak)", rep); err != nil {
		return abort(rep, err)
	}
	hook.quiesce(300*time.Millisecond, 10*time.Second)
	peak := &meter{inner: httpTr, lat: &latencies{}, keep: 20000}
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return abort(rep, err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return abort(rep, err)
		}
		if ps != nil { // the services' own profiles, for the first seconds of the peak
			go ps.profile(c.cpuProfile, c.profileFor)
		}
	}
	rt0, cpu0, rcpu0 := hook.snap(), rusageCPU(), redisCPU(ctx, rdb)
	gc0, gcTotal0 := gcCPU()
	if ps != nil && ps.control != "" {
		gc0, gcTotal0 = ps.servicesGC()
	}
	var tier0 map[string]time.Duration
	if ps != nil {
		tier0 = ps.cpu()
	}
	cs0 := commandStats(ctx, rdb)
	dur, err := runSessions(ctx, "peak sessions", devs, c.concurrency, func(int) dmsim.Transport { return peak }, opt, rep, peak)
	if c.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if c.memProfile != "" {
		if f, err := os.Create(c.memProfile); err == nil {
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	if err != nil {
		return abort(rep, err)
	}
	rep.cpuProc, rep.cpuRedis = rusageCPU()-cpu0, redisCPU(ctx, rdb)-rcpu0
	gc1, gcTotal1 := gcCPU()
	if ps != nil && ps.control != "" {
		gc1, gcTotal1 = ps.servicesGC()
	}
	if ps != nil {
		rep.tierCPU = map[string]time.Duration{}
		for k, v := range ps.cpu() {
			rep.tierCPU[k] = v - tier0[k]
		}
	}
	if gcTotal1 > gcTotal0 {
		rep.gcShare = (gc1 - gc0) / (gcTotal1 - gcTotal0)
	}
	rep.redisCmds = map[string]cmdStat{}
	for k, v := range commandStats(ctx, rdb) {
		if d := (cmdStat{v.calls - cs0[k].calls, v.usec - cs0[k].usec}); d.calls > 0 && k != "info" {
			rep.redisCmds[k] = d
		}
	}
	hook.quiesce(300*time.Millisecond, 10*time.Second)
	rep.rtTotal, rep.rtRequest, rep.rtBreakdown = hook.since(rt0)
	rep.peakSessions, rep.peakMsgs, rep.peakFailed, rep.peakDur = len(devs), peak.ok.Load(), peak.fail.Load(), dur
	rep.p50, rep.p95, rep.p99 = peak.lat.percentiles()

	// Ceiling: the same bodies, the same load generator and concurrency, a bare handler.
	if err := runCeiling(ctx, c, peak.samples, max(dur, c.ceilingMin), rep); err != nil {
		return abort(rep, err)
	}

	// Half of peak.
	peakRate := float64(rep.peakMsgs) / rep.peakDur.Seconds()
	if c.half && peakRate > 0 {
		if err := enqueueAll(ctx, c, st, devs, "enqueue (paced)", rep); err != nil {
			return abort(rep, err)
		}
		hook.quiesce(300*time.Millisecond, 10*time.Second)
		rep.halfTarget = c.halfFraction * peakRate
		paced := &meter{inner: httpTr, lat: &latencies{}, every: time.Duration(float64(time.Second) / rep.halfTarget)}
		label := fmt.Sprintf("paced %.0f msg/s", rep.halfTarget)
		if c.traceFile != "" {
			if f, err := os.Create(c.traceFile); err == nil {
				defer f.Close()
				if err := trace.Start(f); err == nil {
					defer trace.Stop()
				}
			}
		}
		var gw0 gatewayHistogram
		if gwMetrics != "" {
			gw0, _ = scrapeGatewayHistogram(ctx, gwMetrics)
		}
		d, err := runSessions(ctx, label, devs, c.concurrency, func(int) dmsim.Transport { return paced }, opt, rep, paced)
		if c.traceFile != "" {
			trace.Stop()
		}
		if err != nil {
			return abort(rep, err)
		}
		if gwMetrics != "" {
			if gw1, err := scrapeGatewayHistogram(ctx, gwMetrics); err == nil {
				if q, n, ok := gw1.quantiles(gw0, 0.5, 0.99); ok {
					rep.halfGwP50, rep.halfGwP99, rep.halfGwN = q[0], q[1], n
				}
			}
		}
		rep.halfAchieved = float64(paced.ok.Load()) / d.Seconds()
		rep.halfP50, rep.halfP95, rep.halfP99 = paced.lat.percentiles()
		rep.halfFailed = paced.fail.Load()
		// Control: the bare echo handler under the same paced load, same client and
		// concurrency: the latency floor of this machine, load generator and net/http.
		if err := runEcho(ctx, c, peak.samples, d, paced.every, fmt.Sprintf("echo paced %.0f/s", rep.halfTarget), rep); err != nil {
			return abort(rep, err)
		}
	}

	// Live sessions held open.
	if c.live > 0 {
		if err := liveSessions(ctx, c, st, rdb, hook, devs[:c.live], httpTr, opt, rep); err != nil {
			return abort(rep, err)
		}
	}

	// The registry grows; the same peak and ceiling again.
	if c.growTo > 0 {
		if err := grow(ctx, c, st, rdb, hook, devs, httpTr, opt, rep); err != nil {
			return abort(rep, err)
		}
	}

	rounds := func(i int) int {
		n := 1
		if c.growTo > 0 {
			n += 2 * c.flatRounds
		}
		if c.half && peakRate > 0 {
			n++
		}
		if i < c.live {
			n++
		}
		return n
	}
	if err := verify(ctx, c, st, devs, rounds, rep); err != nil {
		return abort(rep, err)
	}
	printReport(c, rep)
	if len(rep.errors) > 0 {
		return 1
	}
	return 0
}

// loggers returns where the services log: nowhere, or warnings and errors on stderr (-v).
func loggers(verbose bool) (io.Writer, *slog.Logger) {
	if !verbose {
		return nil, slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return os.Stderr, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func abort(rep *report, err error) int {
	fmt.Fprintf(os.Stderr, "loadtest: %v\n", err)
	for _, e := range rep.errors[:min(len(rep.errors), 20)] {
		fmt.Fprintln(os.Stderr, "  "+e)
	}
	return 1
}

// parallel runs f(i) for i in [0, n) on conc goroutines, counting progress.
func parallel(ctx context.Context, n, conc int, p *progress, f func(ctx context.Context, i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for w := 0; w < min(conc, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(ctx, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				if p != nil {
					p.done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

func provision(ctx context.Context, c config, st *target, rdb *redis.Client, devs []*dmsim.Device, rep *report) error {
	total := len(devs) + c.registered
	start := time.Now()
	perDevice, err := register(ctx, c, st, rdb, devs, 0, total, "provisioning devices")
	if err != nil {
		return err
	}
	rep.provisionDur = time.Since(start)
	rep.memPerDevice = perDevice
	fmt.Printf("provisioning: %d devices in %.1fs (%.0f/s) through the DeviceService; Redis used_memory (without client buffers) = %.0f B per device\n",
		total, rep.provisionDur.Seconds(), float64(total)/rep.provisionDur.Seconds(), rep.memPerDevice)
	return nil
}

// register creates devices [from, to) through the DeviceService: the simulated devices
// first (i < len(devs)), then idle ones of the same account shape that never hold a session.
// It returns Redis used memory per created device.
func register(ctx context.Context, c config, st *target, rdb *redis.Client, devs []*dmsim.Device, from, to int, label string) (float64, error) {
	mem0, err := usedMemory(ctx, rdb)
	if err != nil {
		return 0, err
	}
	p := startProgress(label, to-from, nil)
	err = parallel(ctx, to-from, c.provisionC, p, func(ctx context.Context, k int) error {
		i := from + k
		var d *devicev1.Device
		if i < len(devs) {
			dc := devs[i].Config()
			d = &devicev1.Device{DeviceId: dc.DevID, ClientAuth: &devicev1.AuthConfig{Type: authTypes[dc.AuthType], Name: dc.ClientName, Secret: dc.ClientSecret}}
		} else {
			id := fmt.Sprintf("IMEI:99%013d", i)
			d = &devicev1.Device{DeviceId: id, ClientAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: "idle-" + strconv.Itoa(i), Secret: "idle-secret-" + strconv.Itoa(i)}}
		}
		d.Labels = map[string]string{"fleet": "loadtest"}
		if _, err := st.Devices.CreateDevice(ctx, &devicev1.CreateDeviceRequest{Device: d}); err != nil {
			return fmt.Errorf("create device %s: %w", d.DeviceId, err)
		}
		return nil
	})
	p.finish()
	if err != nil {
		return 0, err
	}
	mem1, err := usedMemory(ctx, rdb)
	if err != nil {
		return 0, err
	}
	return float64(mem1-mem0) / float64(to-from), nil
}

// enqueueAll queues the session's work for every device: Get ./DevDetail/FwV and a Replace.
func enqueueAll(ctx context.Context, c config, st *target, devs []*dmsim.Device, label string, rep *report) error {
	p := startProgress(label, len(devs), nil)
	defer p.finish()
	return parallel(ctx, len(devs), c.provisionC, p, func(ctx context.Context, i int) error {
		_, err := st.Commands.EnqueueCommands(ctx, &commandv1.EnqueueCommandsRequest{DeviceId: devs[i].DevID(), Operations: []*commandv1.Operation{
			{Type: commandv1.OperationType_OPERATION_TYPE_GET, TargetUri: "./DevDetail/FwV"},
			{Type: commandv1.OperationType_OPERATION_TYPE_REPLACE, TargetUri: "./FUMO/FwPkg1/PkgName", Data: []byte("fw-2.0.0")},
		}})
		if err != nil {
			return fmt.Errorf("enqueue for %s: %w", devs[i].DevID(), err)
		}
		return nil
	})
}

// runSessions holds one session per device, conc at a time, and returns the wall time.
// Failed or incomplete sessions and protocol warnings are recorded as errors.
func runSessions(ctx context.Context, label string, devs []*dmsim.Device, conc int, tr func(i int) dmsim.Transport, opt dmsim.SessionOptions, rep *report, m *meter) (time.Duration, error) {
	start := time.Now()
	p := startProgress(label, len(devs), func() string {
		if m == nil {
			return ""
		}
		el := time.Since(start).Seconds()
		return fmt.Sprintf("%d msgs  %.0f msg/s  %d failed posts", m.ok.Load(), float64(m.ok.Load())/el, m.fail.Load())
	})
	var mu sync.Mutex
	err := parallel(ctx, len(devs), conc, p, func(ctx context.Context, i int) error {
		r, err := devs[i].RunSession(ctx, tr(i), opt)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			rep.errorf("%s: %v", label, err)
		case !r.Ended || r.Aborted:
			rep.errorf("%s: %s", label, r.Summary())
		case len(r.Warnings) > 0:
			rep.errorf("%s: %s: protocol warnings %v", label, devs[i].DevID(), r.Warnings)
		}
		return nil
	})
	d := time.Since(start)
	p.finish()
	return d, err
}

func echoHandler(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Header().Set("Cache-Control", "private")
	w.Write(b)
}

// runCeiling posts the peak run's request bodies to a bare net/http echo handler with the
// same client, transport and concurrency for d.
func runCeiling(ctx context.Context, c config, samples []sample, d time.Duration, rep *report) error {
	return runEcho(ctx, c, samples, d, 0, "ceiling (echo)", rep)
}

// runEcho is the echo run: unpaced (every 0: the ceiling, into rep.ceil*) or paced to one
// post per every (the latency control, into rep.echoPaced*).
func runEcho(ctx context.Context, c config, samples []sample, d, every time.Duration, label string, rep *report) error {
	if len(samples) == 0 {
		return errors.New("no request bodies recorded for the ceiling")
	}
	url := c.echoURL // -split: served by the services process
	if url == "" {
		u, stop, err := serveHTTP(http.HandlerFunc(echoHandler))
		if err != nil {
			return err
		}
		defer stop()
		url = u + "/dm"
	}
	m := &meter{inner: &dmsim.HTTPTransport{Client: newHTTPClient(c.concurrency)}, lat: &latencies{}, every: every}
	var next atomic.Int64
	cpu0 := rusageCPU() + otherCPU()
	start := time.Now()
	deadline := start.Add(d)
	p := startProgress(label, int(d/time.Millisecond), func() string {
		return fmt.Sprintf("%d msgs  %.0f msg/s", m.ok.Load(), float64(m.ok.Load())/time.Since(start).Seconds())
	})
	stopTick := make(chan struct{})
	go func() { // the bar shows elapsed milliseconds of d
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopTick:
				return
			case <-t.C:
				p.done.Store(min(int64(time.Since(start)/time.Millisecond), p.total))
			}
		}
	}()
	var wg sync.WaitGroup
	for w := 0; w < c.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				s := samples[int(next.Add(1)-1)%len(samples)]
				m.Post(ctx, url, s.body, s.ct, "")
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	close(stopTick)
	p.done.Store(p.total)
	p.finish()
	if err := ctx.Err(); err != nil {
		return err
	}
	if f := m.fail.Load(); f > 0 {
		rep.errorf("%s: %d failed posts", label, f)
	}
	if every > 0 {
		rep.echoPacedRate = float64(m.ok.Load()) / el.Seconds()
		rep.echoPacedP50, _, rep.echoPacedP99 = m.lat.percentiles()
		return nil
	}
	rep.ceilMsgs = m.ok.Load()
	rep.ceilingPerS = float64(rep.ceilMsgs) / el.Seconds()
	rep.ceilP50, _, rep.ceilP99 = m.lat.percentiles()
	rep.ceilCPU = rusageCPU() + otherCPU() - cpu0
	return nil
}

// grow measures throughput flatness as the registry grows: c.flatRounds peak runs (and a
// ceiling) at the current registry size, idle devices registered up to c.growTo, and the
// same again. Medians are compared, so one noisy run does not decide.
func grow(ctx context.Context, c config, st *target, rdb *redis.Client, hook *rtHook, devs []*dmsim.Device, httpTr dmsim.Transport, opt dmsim.SessionOptions, rep *report) error {
	rounds := func(label string) (rate, p99, rtReq, ceiling float64, err error) {
		var rates, p99s []float64
		var samples []sample
		var longest time.Duration
		var msgs, req int64
		for k := 0; k < c.flatRounds; k++ {
			if err := enqueueAll(ctx, c, st, devs, "enqueue ("+label+")", rep); err != nil {
				return 0, 0, 0, 0, err
			}
			hook.quiesce(300*time.Millisecond, 10*time.Second)
			m := &meter{inner: httpTr, lat: &latencies{}}
			if k == c.flatRounds-1 {
				m.keep = 20000 // the bodies for this size's ceiling: the last round's only
			}
			rt0 := hook.snap()
			d, err := runSessions(ctx, fmt.Sprintf("%s, round %d", label, k+1), devs, c.concurrency, func(int) dmsim.Transport { return m }, opt, rep, m)
			if err != nil {
				return 0, 0, 0, 0, err
			}
			hook.quiesce(300*time.Millisecond, 10*time.Second)
			_, r, _ := hook.since(rt0)
			msgs, req = msgs+m.ok.Load(), req+r
			rates = append(rates, float64(m.ok.Load())/d.Seconds())
			_, _, q := m.lat.percentiles()
			p99s = append(p99s, q)
			samples, longest = m.samples, max(longest, d)
		}
		var cr report
		if err := runCeiling(ctx, c, samples, max(longest, c.ceilingMin), &cr); err != nil {
			return 0, 0, 0, 0, err
		}
		rep.errors = append(rep.errors, cr.errors...)
		return median(rates), median(p99s), float64(req) / float64(max(msgs, 1)), cr.ceilingPerS, nil
	}
	var err error
	before := len(devs) + c.registered
	rep.flatBefore = before
	if rep.flatRateBefore, rep.flatP99Before, _, rep.flatCeilBefore, err = rounds(fmt.Sprintf("peak at %d registered", before)); err != nil {
		return err
	}
	start := time.Now()
	perDevice, err := register(ctx, c, st, rdb, devs, before, c.growTo, fmt.Sprintf("registering to %d", c.growTo))
	if err != nil {
		return err
	}
	rep.growTotal, rep.growDur, rep.growMem = c.growTo, time.Since(start), perDevice
	rep.growPeakRate, rep.growP99, rep.growRTRequest, rep.growCeiling, err = rounds(fmt.Sprintf("peak at %d registered", c.growTo))
	return err
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// liveSessions opens a session on each device and holds it after the server's commands
// arrive (commands sent, session record written), measures Redis memory against the
// moment before, then lets the sessions finish.
func liveSessions(ctx context.Context, c config, st *target, rdb *redis.Client, hook *rtHook, devs []*dmsim.Device, httpTr dmsim.Transport, opt dmsim.SessionOptions, rep *report) error {
	if err := enqueueAll(ctx, c, st, devs, "enqueue (live)", rep); err != nil {
		return err
	}
	hook.quiesce(300*time.Millisecond, 10*time.Second)
	mem0, err := usedMemory(ctx, rdb)
	if err != nil {
		return err
	}
	release := make(chan struct{})
	var held atomic.Int64
	keys := make([]string, len(devs))
	gates := make([]*gate, len(devs))
	for i := range devs {
		gates[i] = &gate{inner: httpTr, release: release, held: &held, key: &keys[i], prefix: st.Prefix}
	}
	done := make(chan error, 1)
	go func() {
		_, err := runSessions(ctx, "live sessions", devs, len(devs), func(i int) dmsim.Transport { return gates[i] }, opt, rep, nil)
		done <- err
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for held.Load() < int64(len(devs)) && time.Now().Before(deadline) {
		select {
		case err := <-done:
			return fmt.Errorf("live sessions ended before all were held open (%d of %d): %v", held.Load(), len(devs), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	n := held.Load()
	hook.quiesce(300*time.Millisecond, 10*time.Second) // the relays have published the commits' events
	mem1, err := usedMemory(ctx, rdb)
	var samples []int64
	for _, k := range keys {
		if k == "" {
			continue
		}
		if v, err := rdb.MemoryUsage(ctx, k).Result(); err == nil {
			samples = append(samples, v)
		}
	}
	close(release)
	if werr := <-done; werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	if n < int64(len(devs)) {
		rep.errorf("live sessions: only %d of %d were held open", n, len(devs))
	}
	rep.liveHeld = int(n)
	if n > 0 {
		rep.memDeltaPerLive = float64(mem1-mem0) / float64(n)
	}
	rep.liveKeySamples = samples
	// Δused_memory also moves with keys that expire meanwhile (the warm-up's challenge
	// rate-limit counters, say), so the figure reported is the larger of it and the mean
	// MEMORY USAGE of the held sessions' records.
	var sum int64
	for _, v := range samples {
		sum += v
	}
	rep.memPerLive = rep.memDeltaPerLive
	if len(samples) > 0 {
		rep.memPerLive = max(rep.memPerLive, float64(sum)/float64(len(samples)))
	}
	return nil
}

// verify checks every device's commands: rounds(i) rounds of two, each completed after
// exactly one attempt.
func verify(ctx context.Context, c config, st *target, devs []*dmsim.Device, rounds func(i int) int, rep *report) error {
	var mu sync.Mutex
	var checked atomic.Int64
	p := startProgress("checking commands", len(devs), nil)
	err := parallel(ctx, len(devs), c.provisionC, p, func(ctx context.Context, i int) error {
		r, err := st.Commands.ListCommands(ctx, &commandv1.ListCommandsRequest{DeviceId: devs[i].DevID(), PageSize: 1000})
		if err != nil {
			return fmt.Errorf("list commands of %s: %w", devs[i].DevID(), err)
		}
		var bad []string
		if want := 2 * rounds(i); len(r.Commands) != want {
			bad = append(bad, fmt.Sprintf("%s has %d commands, want %d", devs[i].DevID(), len(r.Commands), want))
		}
		for _, cmd := range r.Commands {
			checked.Add(1)
			if cmd.State != commandv1.Command_STATE_COMPLETED || cmd.Attempts != 1 {
				bad = append(bad, fmt.Sprintf("command %s (%s) is %v after %d attempts", cmd.CommandId, cmd.Operation.GetTargetUri(), cmd.State, cmd.Attempts))
			}
		}
		if len(bad) > 0 {
			mu.Lock()
			for _, b := range bad {
				rep.errorf("%s", b)
			}
			mu.Unlock()
		}
		return nil
	})
	p.finish()
	rep.cmdsChecked = int(checked.Load())
	return err
}

func printReport(c config, r *report) {
	peakRate := float64(r.peakMsgs) / r.peakDur.Seconds()
	sessRate := float64(r.peakSessions) / r.peakDur.Seconds()
	ratio := 0.0
	if r.ceilingPerS > 0 {
		ratio = peakRate / r.ceilingPerS
	}
	rtPerMsg, rtReqPerMsg := 0.0, 0.0
	if r.peakMsgs > 0 {
		rtPerMsg = float64(r.rtTotal) / float64(r.peakMsgs)
		rtReqPerMsg = float64(r.rtRequest) / float64(r.peakMsgs)
	}
	fmt.Printf("peak: %d sessions, %d messages in %.2fs: %.0f sessions/s, %.0f messages/s; latency per round trip p50 %.2f ms, p95 %.2f ms, p99 %.2f ms; %d posts failed and were retried\n",
		r.peakSessions, r.peakMsgs, r.peakDur.Seconds(), sessRate, peakRate, r.p50, r.p95, r.p99, r.peakFailed)
	fmt.Printf("  Redis round trips: %.2f per message (%.2f while handling the message, %.2f outbox relay and other background)\n",
		rtPerMsg, rtReqPerMsg, rtPerMsg-rtReqPerMsg)
	keys := make([]string, 0, len(r.rtBreakdown))
	for k := range r.rtBreakdown {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return r.rtBreakdown[keys[i]] > r.rtBreakdown[keys[j]] })
	for _, k := range keys {
		fmt.Printf("    %-40s %8d  %.2f/msg\n", k, r.rtBreakdown[k], float64(r.rtBreakdown[k])/float64(max(r.peakMsgs, 1)))
	}
	if r.peakMsgs > 0 {
		per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(r.peakMsgs) }
		switch {
		case r.tierCPU == nil:
			fmt.Printf("  CPU per message: %.0f µs in this process (gateway, workers, NATS, simulated devices; %.0f%% of it garbage collection, GOGC %s), %.0f µs in redis-server\n",
				per(r.cpuProc), 100*r.gcShare, gogc(), per(r.cpuRedis))
		case !c.processes: // -split
			fmt.Printf("  CPU per message: %.0f µs in the services process (gateway, %d workers; %.0f%% of it garbage collection, GOGC %s), %.0f µs in nats-server, %.0f µs in redis-server, %.0f µs in the load generator (simulated devices)\n",
				per(r.tierCPU["services"]), c.workers, 100*r.gcShare, gogc(), per(r.tierCPU["nats"]), per(r.cpuRedis), per(r.cpuProc))
		default:
			fmt.Printf("  CPU per message by process: gateway %.0f µs, session workers %.0f µs, nats-server %.0f µs, redis-server %.0f µs, load generator (simulated devices) %.0f µs\n",
				per(r.tierCPU["gateway"]), per(r.tierCPU["session"]), per(r.tierCPU["nats"]), per(r.cpuRedis), per(r.cpuProc))
		}
		names := make([]string, 0, len(r.redisCmds))
		for k := range r.redisCmds {
			names = append(names, k)
		}
		sort.Slice(names, func(i, j int) bool { return r.redisCmds[names[i]].usec > r.redisCmds[names[j]].usec })
		fmt.Printf("  redis-server command time (INFO commandstats; a script's time includes the commands it runs):")
		for _, k := range names[:min(len(names), 8)] {
			c := r.redisCmds[k]
			fmt.Printf(" %s %.1f µs/msg (%.1f calls/msg)", k, float64(c.usec)/float64(r.peakMsgs), float64(c.calls)/float64(r.peakMsgs))
		}
		fmt.Println()
	}
	fmt.Printf("ceiling: bare net/http echo of the same request bodies, same client and concurrency: %.0f messages/s (p50 %.2f ms, p99 %.2f ms, %.0f µs CPU/msg); dmgrid = %.3f of it (goal ≥ 0.25)\n",
		r.ceilingPerS, r.ceilP50, r.ceilP99, float64(r.ceilCPU.Microseconds())/float64(max(r.ceilMsgs, 1)), ratio)
	bound := 0.0
	if r.peakMsgs > 0 && r.ceilMsgs > 0 && r.tierCPU != nil {
		// Both runs are CPU-bound on the same cores, so the ratio is roughly the echo's CPU per
		// message over ours. The processes that are not dmgrid's (redis-server, nats-server,
		// the simulated devices) set a bound on it that no change to the services can pass.
		others := r.tierCPU["nats"] + r.cpuRedis + r.cpuProc
		echo := float64(r.ceilCPU.Microseconds()) / float64(r.ceilMsgs)
		if o := float64(others.Microseconds()) / float64(r.peakMsgs); o > 0 {
			bound = echo / o
			fmt.Printf("  CPU bound: the echo took %.0f µs per message in all; redis-server, nats-server and the simulated devices alone took %.0f µs per dmgrid message, so even services costing nothing would reach a ratio of about %.3f\n", echo, o, bound)
		}
	}
	if r.halfTarget > 0 {
		fmt.Printf("paced at %.0f%% of peak (%.0f messages/s): achieved %.0f/s; latency p50 %.2f ms, p95 %.2f ms, p99 %.2f ms (goal p99 < 10 ms); %d posts failed and were retried\n",
			100*c.halfFraction, r.halfTarget, r.halfAchieved, r.halfP50, r.halfP95, r.halfP99, r.halfFailed)
		if r.halfGwN > 0 {
			fmt.Printf("  seen by the gateway (its dmgrid_gateway_message_duration_seconds, request read to reply written; bucket upper bounds): p50 ≤ %g ms, p99 ≤ %g ms over %.0f messages\n",
				r.halfGwP50, r.halfGwP99, r.halfGwN)
		}
		fmt.Printf("  control: the bare echo handler paced the same way: %.0f/s, latency p50 %.2f ms, p99 %.2f ms\n", r.echoPacedRate, r.echoPacedP50, r.echoPacedP99)
		if r.halfAchieved < 0.95*r.halfTarget {
			fmt.Printf("  (the paced rate was not reached: the machine had less capacity than during the peak run, so this run was saturated too and its latency is not the half-load latency)\n")
		}
	}
	fmt.Printf("Redis memory: %.0f B per registered device (goal < 2048)", r.memPerDevice)
	if r.liveHeld > 0 {
		med := int64(0)
		if len(r.liveKeySamples) > 0 {
			s := slices.Clone(r.liveKeySamples)
			slices.Sort(s)
			med = s[len(s)/2]
		}
		fmt.Printf(", %.0f B per live session (goal < 16384; %d sessions held open; Δused_memory %.0f B per session, the session record's MEMORY USAGE median %d B over %d keys; the larger is reported)",
			r.memPerLive, r.liveHeld, r.memDeltaPerLive, med, len(r.liveKeySamples))
	}
	fmt.Println()
	flat, flatNorm := 0.0, 0.0
	if r.growTotal > 0 && r.flatRateBefore > 0 && r.flatCeilBefore > 0 && r.growCeiling > 0 {
		flat = r.growPeakRate / r.flatRateBefore
		flatNorm = (r.growPeakRate / r.growCeiling) / (r.flatRateBefore / r.flatCeilBefore)
		fmt.Printf("registry growth (median of %d peak runs at each size): at %d registered %.0f messages/s (p99 %.2f ms, ceiling %.0f/s); grown to %d (+%d in %.0fs, %.0f B each) %.0f messages/s (p99 %.2f ms, %.2f Redis round trips per message while handling it, ceiling %.0f/s): throughput ratio %.3f (%.3f as a share of each size's own ceiling; goal within 10%%)\n",
			c.flatRounds, r.flatBefore, r.flatRateBefore, r.flatP99Before, r.flatCeilBefore,
			r.growTotal, r.growTotal-r.flatBefore, r.growDur.Seconds(), r.growMem, r.growPeakRate, r.growP99, r.growRTRequest, r.growCeiling, flat, flatNorm)
	}
	fmt.Printf("commands: %d checked, each must be completed after exactly one attempt\n", r.cmdsChecked)
	if len(r.errors) > 0 {
		fmt.Printf("ERRORS: %d\n", len(r.errors))
		for _, e := range r.errors[:min(len(r.errors), 20)] {
			fmt.Println("  " + e)
		}
	}
	fmt.Printf("RESULT sessions_per_s=%.0f msgs_per_s=%.0f ceiling_per_s=%.0f ratio=%.3f p50_ms=%.2f p99_ms=%.2f redis_rt_per_msg=%.2f errors=%d"+
		" p95_ms=%.2f half_msgs_per_s=%.0f half_p50_ms=%.2f half_p99_ms=%.2f redis_rt_per_msg_request=%.2f mem_per_device_b=%.0f mem_per_live_session_b=%.0f devices=%d registered=%d concurrency=%d"+
		" echo_half_p99_ms=%.2f grown_registered=%d flat_before_msgs_per_s=%.0f grown_msgs_per_s=%.0f flat=%.3f flat_vs_ceiling=%.3f ratio_bound_without_services=%.3f half_gateway_p99_ms=%g\n",
		sessRate, peakRate, r.ceilingPerS, ratio, r.p50, r.p99, rtPerMsg, len(r.errors),
		r.p95, r.halfAchieved, r.halfP50, r.halfP99, rtReqPerMsg, r.memPerDevice, r.memPerLive, c.devices, c.registered, c.concurrency,
		r.echoPacedP99, r.growTotal, r.flatRateBefore, r.growPeakRate, flat, flatNorm, bound, r.halfGwP99)
}
