package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Dead letters are events a consumer gives up on (undecodable, or failing on every attempt).
// They are published unchanged, with why, on a subject under DeadLetterRoot, so that they are
// kept for an operator instead of being dropped by JetStream. Every consumer (inventory,
// notifier) uses the same headers and, by default, the same stream.
const (
	DeadLetterRoot          = "dmgrid.deadletter"
	DefaultDeadLetterStream = "DMGRID_DEADLETTER"
)

// Dead-letter message headers.
const (
	HeaderDeadLetterReason   = "Dmgrid-Deadletter-Reason"
	HeaderDeadLetterConsumer = "Dmgrid-Deadletter-Consumer"
	HeaderOriginalSubject    = "Dmgrid-Original-Subject"
	HeaderOriginalStreamSeq  = "Dmgrid-Original-Stream-Seq"
	HeaderDeliveries         = "Dmgrid-Deliveries"
)

// DeadLetterStreamConfig is the configuration of the stream named name that holds the dead
// letters published on subject: every subject under DeadLetterRoot when subject is one of
// them (one stream for every service's dead letters), on disk, kept for 30 days.
func DeadLetterStreamConfig(name, subject string) jetstream.StreamConfig {
	if strings.HasPrefix(subject, DeadLetterRoot+".") {
		subject = DeadLetterRoot + ".>"
	}
	return jetstream.StreamConfig{Name: name, Subjects: []string{subject}, Storage: jetstream.FileStorage,
		MaxAge: 30 * 24 * time.Hour}
}

// EnsureStream creates the stream unless one of that name exists (whose configuration is
// then left as it is).
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	if _, err := js.Stream(ctx, cfg.Name); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("look up stream %s: %w", cfg.Name, err)
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("create stream %s: %w", cfg.Name, err)
	}
	return nil
}

// DeadLetters publishes the dead letters of one durable consumer.
type DeadLetters struct {
	JS       jetstream.JetStream
	Subject  string // where the dead letters go
	Stream   string // the stream holding Subject, which confirms each write; "": plain NATS publish (at most once)
	Consumer string // the durable consumer's name (a header, and part of the message id)
	Source   string // the stream the consumer reads (part of the message id)
}

// Setup creates the dead-letter stream when one is configured and missing.
func (d *DeadLetters) Setup(ctx context.Context) error {
	if d.Stream == "" {
		return nil
	}
	return EnsureStream(ctx, d.JS, DeadLetterStreamConfig(d.Stream, d.Subject))
}

// msg is the dead letter of m (see Publish). Its Nats-Msg-Id names the consumer and the
// original message, so that dead-lettering the same message twice (a crash before it was
// terminated) is dropped by the dead-letter stream.
func (d *DeadLetters) msg(m jetstream.Msg, reason string) *nats.Msg {
	dl := &nats.Msg{Subject: d.Subject, Data: m.Data(), Header: nats.Header{}}
	for k, v := range m.Headers() {
		if k != jetstream.MsgIDHeader {
			dl.Header[k] = v
		}
	}
	dl.Header.Set(HeaderDeadLetterReason, reason)
	dl.Header.Set(HeaderDeadLetterConsumer, d.Consumer)
	dl.Header.Set(HeaderOriginalSubject, m.Subject())
	if md, err := m.Metadata(); err == nil {
		dl.Header.Set(HeaderOriginalStreamSeq, strconv.FormatUint(md.Sequence.Stream, 10))
		dl.Header.Set(HeaderDeliveries, strconv.FormatUint(md.NumDelivered, 10))
		dl.Header.Set(jetstream.MsgIDHeader, d.Consumer+":"+d.Source+":"+strconv.FormatUint(md.Sequence.Stream, 10))
	}
	return dl
}

// Handle dead-letters m for reason and terminates it, logging both; it reports whether it
// did. When the publish fails, m is handed back after retry (to be dead-lettered on a later
// delivery) and the failure logged. Every consumer's dead-lettering goes through it.
func (d *DeadLetters) Handle(m jetstream.Msg, reason string, retry time.Duration, log *slog.Logger) bool {
	log = log.With("consumer", d.Consumer, "subject", m.Subject(), "reason", reason)
	if err := d.Publish(context.Background(), m, reason); err != nil {
		log.Error("dead-letter event", "err", err)
		if err := m.NakWithDelay(retry); err != nil {
			log.Debug("nak event", "err", err)
		}
		return false
	}
	log.Warn("event dead-lettered", "dead_letter_subject", d.Subject)
	if err := m.TermWithReason(reason); err != nil {
		log.Debug("terminate event", "err", err)
	}
	return true
}

// Publish publishes m's dead letter, within ctx's deadline (5s when it has none): m's data
// and headers as received (but its Nats-Msg-Id) with the reason, the consumer, m's subject,
// stream sequence and delivery count. It neither acknowledges nor terminates m: after a nil
// error the caller terminates m; after an error it hands m back, to be dead-lettered on a
// later attempt.
func (d *DeadLetters) Publish(ctx context.Context, m jetstream.Msg, reason string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	dl := d.msg(m, reason)
	if d.Stream == "" {
		// No stream to confirm the write: flush so that at least the server has it.
		nc := d.JS.Conn()
		if err := nc.PublishMsg(dl); err != nil {
			return err
		}
		return nc.FlushWithContext(ctx)
	}
	_, err := d.JS.PublishMsg(ctx, dl)
	return err
}
