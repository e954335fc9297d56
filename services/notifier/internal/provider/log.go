package provider

import (
	"context"
	"encoding/hex"
	"log/slog"
	"strconv"
	"sync/atomic"
)

// Log is the development provider: it logs every segment in hex and reports it sent.
type Log struct {
	Logger *slog.Logger
	n      atomic.Uint64
}

// Send logs the segments and returns ids "log-<n>".
func (l *Log) Send(ctx context.Context, m Message) ([]string, error) {
	ids := make([]string, len(m.UDHSegments))
	for i, seg := range m.UDHSegments {
		ids[i] = "log-" + strconv.FormatUint(l.n.Add(1), 10)
		if l.Logger != nil {
			l.Logger.InfoContext(ctx, "notification sms", "notification_id", m.NotificationID, "msisdn", m.MSISDN,
				"segment", i+1, "segments", len(m.UDHSegments), "provider_message_id", ids[i], "user_data_hex", hex.EncodeToString(seg))
		}
	}
	return ids, nil
}
