package events_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dmgrid/dmgrid/internal/e2e"
	"github.com/dmgrid/dmgrid/pkg/events"
)

// jetStream starts an embedded nats-server with JetStream and returns a client of it.
func jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	return e2e.JetStream(t, e2e.StartNATS(t))
}

// received publishes one message on a source stream and returns it as a consumer gets it.
func received(t *testing.T, js jetstream.JetStream) jetstream.Msg {
	t.Helper()
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SRC", Subjects: []string{"src.>"}}); err != nil {
		t.Fatal(err)
	}
	m := &nats.Msg{Subject: "src.a", Data: []byte("payload"), Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, "original-id")
	m.Header.Set("X-Trace", "t1")
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "SRC", jetstream.ConsumerConfig{Durable: "c1", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for msg := range batch.Messages() {
		return msg
	}
	t.Fatalf("nothing fetched: %v", batch.Error())
	return nil
}

// TestDeadLettersToStream: the dead letter carries the data and headers as received (not
// the Nats-Msg-Id) plus the reason, consumer, original subject, stream sequence and
// delivery count; its own message id makes a second dead-lettering of the same message a
// duplicate; Setup creates the shared stream once.
func TestDeadLettersToStream(t *testing.T) {
	js := jetStream(t)
	ctx := context.Background()
	m := received(t, js)
	d := &events.DeadLetters{JS: js, Subject: "dmgrid.deadletter.test", Stream: "DL", Consumer: "c1", Source: "SRC"}
	for range 2 {
		if err := d.Setup(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s, err := js.Stream(ctx, "DL")
	if err != nil {
		t.Fatal(err)
	}
	if subj := s.CachedInfo().Config.Subjects; !slices.Equal(subj, []string{"dmgrid.deadletter.>"}) {
		t.Fatalf("dead-letter stream subjects %v", subj)
	}
	for range 2 {
		if err := d.Publish(ctx, m, "why"); err != nil {
			t.Fatal(err)
		}
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("dead-letter stream: %+v %v, want one message (the second is a duplicate)", info, err)
	}
	dl, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	h := dl.Header
	if dl.Subject != "dmgrid.deadletter.test" || string(dl.Data) != "payload" || h.Get(events.HeaderDeadLetterReason) != "why" ||
		h.Get(events.HeaderDeadLetterConsumer) != "c1" || h.Get(events.HeaderOriginalSubject) != "src.a" ||
		h.Get(events.HeaderOriginalStreamSeq) != "1" || h.Get(events.HeaderDeliveries) != "1" || h.Get("X-Trace") != "t1" ||
		h.Get(jetstream.MsgIDHeader) != "c1:SRC:1" {
		t.Fatalf("dead letter %s %q %v", dl.Subject, dl.Data, h)
	}
}

// TestDeadLettersPlainPublish: without a stream the dead letter is a plain NATS message.
func TestDeadLettersPlainPublish(t *testing.T) {
	js := jetStream(t)
	m := received(t, js)
	sub, err := js.Conn().SubscribeSync("ops.deadletter")
	if err != nil {
		t.Fatal(err)
	}
	d := &events.DeadLetters{JS: js, Subject: "ops.deadletter", Consumer: "c1", Source: "SRC"}
	if err := d.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := d.Publish(context.Background(), m, "why"); err != nil {
		t.Fatal(err)
	}
	got, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Data) != "payload" || got.Header.Get(events.HeaderDeadLetterReason) != "why" || got.Header.Get(events.HeaderOriginalSubject) != "src.a" {
		t.Fatalf("dead letter %q %v", got.Data, got.Header)
	}
	if cfg := events.DeadLetterStreamConfig("X", "ops.deadletter"); !slices.Equal(cfg.Subjects, []string{"ops.deadletter"}) {
		t.Fatalf("a subject outside dmgrid.deadletter: stream subjects %v", cfg.Subjects)
	}
}
