package provider

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Kannel submits through Kannel's smsbox HTTP interface (GET /cgi-bin/sendsms): one request
// per segment with udh= the URL-encoded user data header (length octet first), text= the
// URL-encoded binary payload and coding=1 (8-bit), as the Kannel user guide describes for
// binary messages. smsbox answers 202 "Accepted for delivery" (or "Queued for later
// delivery"); it returns no message id.
type Kannel struct {
	URL      string // e.g. http://127.0.0.1:13013/cgi-bin/sendsms
	User     string
	Password string
	From     string        // optional sender
	Client   *http.Client  // nil: a client with Timeout
	Timeout  time.Duration // per request, default 10s
}

// Send submits every segment of m.
func (k *Kannel) Send(ctx context.Context, m Message) ([]string, error) {
	timeout := k.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	client := k.Client
	if client == nil {
		client = &http.Client{Timeout: timeout}
	}
	ids := make([]string, 0, len(m.UDHSegments))
	for i, seg := range m.UDHSegments {
		op := fmt.Sprintf("sendsms segment %d/%d", i+1, len(m.UDHSegments))
		udh, payload, err := splitUDH(seg)
		if err != nil {
			return ids, &Error{Provider: "kannel", Op: op, Err: permanent(err)}
		}
		q := url.Values{}
		q.Set("username", k.User)
		q.Set("password", k.Password)
		q.Set("to", m.MSISDN)
		if k.From != "" {
			q.Set("from", k.From)
		}
		q.Set("udh", string(udh))
		q.Set("text", string(payload))
		q.Set("coding", "1")
		if err := k.get(ctx, client, timeout, q); err != nil {
			return ids, &Error{Provider: "kannel", Op: op, Err: err}
		}
		ids = append(ids, "")
	}
	return ids, nil
}

func (k *Kannel) get(ctx context.Context, client *http.Client, timeout time.Duration, q url.Values) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sep := "?"
	if strings.Contains(k.URL, "?") {
		sep = "&"
	}
	// url.Values.Encode percent-encodes every byte outside the unreserved set, which is what
	// smsbox expects for binary udh and text (%06%05%04...).
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.URL+sep+q.Encode(), nil)
	if err != nil {
		return permanent(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return nil
	case resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	default:
		// 400/403/...: bad credentials or parameters; a retry sends the same request.
		return permanent(fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body)))
	}
}
