package dmsim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
)

// model is one device model a fleet draws from. TAC is the 8-digit Type Allocation Code
// that starts the model's IMEIs.
type model struct {
	man, mod, devTyp, oem, hwV, tac string
	fw                              []string
}

var fleetModels = []model{
	{"Example Devices Inc.", "EX-100", "phone", "Example OEM", "1.0", "35209900", []string{"1.0.7", "1.1.0", "2.0.0"}},
	{"Example Devices Inc.", "EX-200", "phone", "Example OEM", "2.1", "35209901", []string{"3.2.1", "3.3.0"}},
	{"Acme Modems", "AM-4G", "modem", "Acme", "B", "86012345", []string{"04.10", "04.12", "05.00"}},
	{"Acme Modems", "AM-5G", "modem", "Acme", "C", "86012346", []string{"07.01"}},
	{"Sensorix", "SX-IoT", "iot", "Sensorix", "r3", "49015420", []string{"0.9.4", "1.0.0", "1.0.1"}},
}

// Fleet is a set of devices with models and firmware drawn deterministically from a seed,
// for load tests: the same seed gives the same DevIDs, models and firmware.
type Fleet struct {
	Devices []*Device
}

// NewFleet builds n devices from base. Each gets an IMEI-like DevID (15 digits, valid Luhn
// check digit) and a model's Man/Mod/DevTyp/OEM/HwV/FwV; customize (may be nil) adjusts each
// Config afterwards, e.g. to give every device its own credentials.
func NewFleet(n int, seed uint64, base Config, customize func(i int, c *Config)) *Fleet {
	rng := rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15))
	f := &Fleet{Devices: make([]*Device, 0, n)}
	seen := make(map[string]bool, n)
	for i := 0; i < n; i++ {
		m := fleetModels[rng.IntN(len(fleetModels))]
		var imei string
		for {
			body := fmt.Sprintf("%s%06d", m.tac, rng.IntN(1000000))
			imei = body + string(luhn(body))
			if !seen[imei] {
				seen[imei] = true
				break
			}
		}
		c := base
		c.DevID = "IMEI:" + imei
		c.Man, c.Mod, c.DevTyp, c.OEM, c.HwV = m.man, m.mod, m.devTyp, m.oem, m.hwV
		c.FwV = m.fw[rng.IntN(len(m.fw))]
		c.SwV = c.FwV
		if customize != nil {
			customize(i, &c)
		}
		f.Devices = append(f.Devices, NewDevice(c))
	}
	return f
}

// FleetResult is the outcome of one device's session in Fleet.Run.
type FleetResult struct {
	Device *Device
	Report *SessionReport
	Err    error
}

// Run holds one session per device with at most concurrency sessions at a time and returns
// the results in device order.
func (f *Fleet) Run(ctx context.Context, t Transport, concurrency int, opt SessionOptions) []FleetResult {
	if concurrency <= 0 {
		concurrency = 1
	}
	res := make([]FleetResult, len(f.Devices))
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, d := range f.Devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				res[i] = FleetResult{Device: d, Err: fmt.Errorf("dmsim: %s: %w", d.DevID(), ctx.Err())}
				return
			}
			defer func() { <-sem }()
			rep, err := d.RunSession(ctx, t, opt)
			res[i] = FleetResult{Device: d, Report: rep, Err: err}
		}()
	}
	wg.Wait()
	return res
}
