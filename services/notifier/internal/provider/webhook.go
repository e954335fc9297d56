package provider

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Webhook POSTs each message as JSON to a URL, for carriers reached through an HTTP API of
// one's own:
//
//	{"notification_id": "...", "msisdn": "+49...", "segments": [{"udh_hex": "0605040b8423f0", "payload_hex": "0106..."}]}
//
// A 2xx answer means accepted; its body may be {"message_ids": ["..."]}. 408, 429 and 5xx
// are retried later; other statuses are permanent failures.
type Webhook struct {
	URL     string
	Client  *http.Client  // nil: a client with Timeout
	Timeout time.Duration // per request, default 10s
}

// WebhookSegment is one SMS of the webhook payload.
type WebhookSegment struct {
	UDHHex     string `json:"udh_hex"`
	PayloadHex string `json:"payload_hex"`
}

// WebhookRequest is the JSON body the webhook receives.
type WebhookRequest struct {
	NotificationID string           `json:"notification_id"`
	MSISDN         string           `json:"msisdn"`
	Segments       []WebhookSegment `json:"segments"`
}

type webhookResponse struct {
	MessageIDs []string `json:"message_ids"`
}

// maxWebhookReply bounds how much of the answer is read.
const maxWebhookReply = 64 << 10

// Send posts m.
func (w *Webhook) Send(ctx context.Context, m Message) ([]string, error) {
	fail := func(op string, err error) ([]string, error) {
		return nil, &Error{Provider: "webhook", Op: op, Err: err}
	}
	req := WebhookRequest{NotificationID: m.NotificationID, MSISDN: m.MSISDN}
	for _, seg := range m.UDHSegments {
		udh, payload, err := splitUDH(seg)
		if err != nil {
			return fail("encode", permanent(err))
		}
		req.Segments = append(req.Segments, WebhookSegment{UDHHex: hex.EncodeToString(udh), PayloadHex: hex.EncodeToString(payload)})
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fail("encode", permanent(err))
	}
	timeout := w.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fail("request", permanent(err))
	}
	hr.Header.Set("Content-Type", "application/json")
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: timeout}
	}
	resp, err := client.Do(hr)
	if err != nil {
		return fail("post", err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxWebhookReply))
	if err != nil {
		return fail("read reply", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		err := fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(reply[:min(len(reply), 200)]))
		if resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			return fail("post", err)
		}
		return fail("post", permanent(err))
	}
	var wr webhookResponse
	if len(bytes.TrimSpace(reply)) > 0 {
		// A body that is not the documented JSON is tolerated: the POST was accepted.
		_ = json.Unmarshal(reply, &wr)
	}
	return wr.MessageIDs, nil
}

// errNoUDH: a segment without a well-formed user data header.
var errNoUDH = errors.New("segment has no user data header")

// splitUDH splits TP-User-Data into the UDH (with its length octet) and the payload
// (3GPP TS 23.040 §9.2.3.24).
func splitUDH(ud []byte) (udh, payload []byte, err error) {
	if len(ud) == 0 || 1+int(ud[0]) > len(ud) {
		return nil, nil, errNoUDH
	}
	n := 1 + int(ud[0])
	return ud[:n], ud[n:], nil
}
