package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dmgrid/dmgrid/internal/testredis"
)

// BenchmarkApply measures the store alone: the four updates of a new device's session
// (started, DevInfo attributes and nodes, DevDetail results, ended), in pipelines of 256
// from 4 goroutines, each with its own devices, as the consumer's workers do.
func BenchmarkApply(b *testing.B) {
	s := New(testredis.Client(b), testredis.Prefix(b), Options{})
	ctx := context.Background()
	if err := s.Load(ctx); err != nil {
		b.Fatal(err)
	}
	const workers, batch = 4, 256
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ups := make([]Update, 0, batch)
			for i := range b.N {
				if (i/4)%workers != w {
					continue
				}
				dev := fmt.Sprintf("IMEI:%015d", i/4)
				u := Update{EventID: fmt.Sprint(i), DeviceID: dev, Time: time.UnixMilli(int64(1e12 + i)), Seen: true}
				switch i % 4 {
				case 0:
					u.Attrs = []Attr{{AttrSessionID, "1"}, {AttrSessionStart, "1"}}
					u.Counters = []string{CounterStarted}
				case 1:
					u.Attrs = []Attr{{AttrDevID, dev}, {string(FieldMan), "Maker"}, {string(FieldMod), "M-1"}, {string(FieldDmV), "1.2"}, {string(FieldLang), "en"}}
					for _, a := range u.Attrs {
						u.Nodes = append(u.Nodes, Node{"./DevInfo/" + a.Name, node(a.Value)})
					}
				case 2:
					u.Attrs = []Attr{{string(FieldFwV), "1.0"}, {string(FieldSwV), "2.0"}, {string(FieldHwV), "B"}}
					for _, a := range u.Attrs {
						u.Nodes = append(u.Nodes, Node{"./DevDetail/" + a.Name, node(a.Value)})
					}
				case 3:
					u.Attrs = []Attr{{AttrSessionEnd, "1"}, {string(FieldOutcome), "OUTCOME_COMPLETED"}}
					u.Counters = []string{CounterCompleted}
				}
				ups = append(ups, u)
				if len(ups) == batch {
					if _, err := s.ApplyBatch(ctx, ups); err != nil {
						b.Error(err)
						return
					}
					ups = ups[:0]
				}
			}
			if len(ups) > 0 {
				if _, err := s.ApplyBatch(ctx, ups); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
}
