package dmsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// DefaultMaxResponseBytes bounds a reply body read by HTTPTransport.
const DefaultMaxResponseBytes = 16 << 20

// DefaultUserAgent is sent by HTTPTransport when UserAgent is empty.
const DefaultUserAgent = "dmgrid-dmsim/1.0 (OMA DM 1.2 simulator)"

// ErrResponseTooLarge is wrapped when a reply exceeds MaxResponseBytes.
var ErrResponseTooLarge = errors.New("response body too large")

// HTTPError is a reply with an HTTP status other than 200. DM servers answer every
// SyncML-level outcome with 200 (PROTOCOL.md §1), so anything else is a transport failure.
type HTTPError struct {
	StatusCode int
	Status     string
}

func (e *HTTPError) Error() string { return "http status " + e.Status }

// Retryable reports whether a Post error warrants re-POSTing the same message: network
// errors and HTTP 408/500/502/503/504, as the AOSP DM client does (PROTOCOL.md §1, §12.11).
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, ErrResponseTooLarge) {
		return false
	}
	var he *HTTPError
	if errors.As(err, &he) {
		switch he.StatusCode {
		case http.StatusRequestTimeout, http.StatusInternalServerError, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	return true
}

// HTTPTransport posts DM messages over HTTP(S) (PROTOCOL.md §1). The zero value uses
// http.DefaultClient.
type HTTPTransport struct {
	Client           *http.Client
	UserAgent        string
	AcceptLanguage   string // default "en-US"
	MaxResponseBytes int64  // default DefaultMaxResponseBytes
}

// Post sends one message and returns the reply body and its Content-Type. It sets the
// headers real clients send (AOSP DMHttpConnector: Accept, Accept-Charset, Accept-Language,
// Cache-Control, User-Agent) and x-syncml-hmac when hmacHeader is not empty. Content-Length
// is always set (no chunked coding).
func (h *HTTPTransport) Post(ctx context.Context, url string, body []byte, contentType, hmacHeader string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, "", fmt.Errorf("build request: %w", err)
	}
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Add("Accept", syncml.ContentTypeWBXML)
	req.Header.Add("Accept", syncml.ContentTypeXML)
	req.Header.Set("Accept-Charset", "utf-8")
	lang := h.AcceptLanguage
	if lang == "" {
		lang = "en-US"
	}
	req.Header.Set("Accept-Language", lang)
	req.Header.Set("Cache-Control", "private")
	ua := h.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	req.Header.Set("User-Agent", ua)
	if hmacHeader != "" {
		req.Header.Set(dmauth.HMACHeaderName, hmacHeader)
	}
	c := h.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	limit := h.MaxResponseBytes
	if limit <= 0 {
		limit = DefaultMaxResponseBytes
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
		return nil, "", &HTTPError{StatusCode: resp.StatusCode, Status: resp.Status}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, "", fmt.Errorf("read response: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, "", fmt.Errorf("read response: more than %d bytes: %w", limit, ErrResponseTooLarge)
	}
	return b, resp.Header.Get("Content-Type"), nil
}
