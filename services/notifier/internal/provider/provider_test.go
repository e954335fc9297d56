package provider

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// p1 of vectors/pkg0: one SMS, UDH 06 05 04 0B 84 23 F0 then the WSP push.
var p1UD, _ = hex.DecodeString("0605040b8423f0010603c4af870e7a5be5d819d636d70bb9062165d76f02c80000001a2b0f636f6d2e6578616d706c652e646d73")

func TestRouter(t *testing.T) {
	r, err := ParseRoutes("label:carrier:acme=kannel, +49=smpp, +4917=webhook, default=log")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		msisdn string
		labels map[string]string
		want   string
	}{
		{"+491512345", nil, "smpp"}, {"+49171234", nil, "webhook"}, {"0049 171 234", nil, "webhook"},
		{"+1555", nil, "log"}, {"+49151", map[string]string{"carrier": "acme"}, "kannel"},
		{"+49151", map[string]string{"carrier": "other"}, "smpp"},
	} {
		if got, err := r.Route(c.msisdn, c.labels); err != nil || got != c.want {
			t.Errorf("Route(%q, %v) = %q, %v; want %q", c.msisdn, c.labels, got, err, c.want)
		}
	}
	if got := r.Providers(); len(got) != 4 {
		t.Errorf("Providers = %v", got)
	}
	nodef, _ := ParseRoutes("+49=smpp")
	if _, err := nodef.Route("+1", nil); !errors.Is(err, ErrNoRoute) {
		t.Errorf("no default: %v", err)
	}
	for _, bad := range []string{"smpp", "=smpp", "+49=", "49=smpp", "label:=x", "+4a=smpp"} {
		if _, err := ParseRoutes(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestWebhook(t *testing.T) {
	var got WebhookRequest
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s", r.Method, r.Header.Get("Content-Type"))
		}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Error(err)
		}
		w.WriteHeader(status)
		io.WriteString(w, `{"message_ids":["m1"]}`)
	}))
	defer srv.Close()
	w := &Webhook{URL: srv.URL}
	ids, err := w.Send(context.Background(), Message{NotificationID: "n1", MSISDN: "+4917", UDHSegments: [][]byte{p1UD}})
	if err != nil || len(ids) != 1 || ids[0] != "m1" {
		t.Fatalf("Send = %v, %v", ids, err)
	}
	if got.MSISDN != "+4917" || got.NotificationID != "n1" || len(got.Segments) != 1 || got.Segments[0].UDHHex != "0605040b8423f0" ||
		got.Segments[0].PayloadHex != hex.EncodeToString(p1UD[7:]) {
		t.Fatalf("webhook got %+v", got)
	}
	status = http.StatusServiceUnavailable
	if _, err := w.Send(context.Background(), Message{MSISDN: "+1", UDHSegments: [][]byte{p1UD}}); err == nil || IsPermanent(err) {
		t.Fatalf("503: %v", err)
	}
	status = http.StatusBadRequest
	if _, err := w.Send(context.Background(), Message{MSISDN: "+1", UDHSegments: [][]byte{p1UD}}); !IsPermanent(err) {
		t.Fatalf("400: %v", err)
	}
	if _, err := w.Send(context.Background(), Message{MSISDN: "+1", UDHSegments: [][]byte{{9, 1}}}); !IsPermanent(err) {
		t.Fatalf("bad UDH: %v", err)
	}
}

// The Kannel adapter is checked against an HTTP double of smsbox's sendsms (not a real
// Kannel): binary udh and text, coding=1, credentials, one request per segment.
func TestKannel(t *testing.T) {
	var mu sync.Mutex
	var queries []map[string][]string
	status := http.StatusAccepted
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.Query())
		mu.Unlock()
		w.WriteHeader(status)
		io.WriteString(w, "0: Accepted for delivery")
	}))
	defer srv.Close()
	k := &Kannel{URL: srv.URL + "/cgi-bin/sendsms", User: "u", Password: "p"}
	seg2 := append([]byte{0x0b, 0x05, 0x04, 0x0b, 0x84, 0x23, 0xf0, 0x00, 0x03, 0x5a, 0x02, 0x02}, 0xaa, 0x00, 0xff)
	if _, err := k.Send(context.Background(), Message{MSISDN: "+491", UDHSegments: [][]byte{p1UD, seg2}}); err != nil {
		t.Fatal(err)
	}
	if len(queries) != 2 {
		t.Fatalf("%d requests", len(queries))
	}
	q := queries[1]
	if q["username"][0] != "u" || q["password"][0] != "p" || q["to"][0] != "+491" || q["coding"][0] != "1" ||
		q["udh"][0] != string(seg2[:12]) || q["text"][0] != string(seg2[12:]) {
		t.Fatalf("query %v", q)
	}
	status = http.StatusForbidden
	if _, err := k.Send(context.Background(), Message{MSISDN: "+491", UDHSegments: [][]byte{p1UD}}); !IsPermanent(err) {
		t.Fatalf("403: %v", err)
	}
	status = http.StatusServiceUnavailable
	if _, err := k.Send(context.Background(), Message{MSISDN: "+491", UDHSegments: [][]byte{p1UD}}); err == nil || IsPermanent(err) {
		t.Fatalf("503: %v", err)
	}
}

func TestLog(t *testing.T) {
	var l Log
	ids, err := l.Send(context.Background(), Message{UDHSegments: [][]byte{p1UD, p1UD}})
	if err != nil || len(ids) != 2 || ids[0] == ids[1] {
		t.Fatalf("%v %v", ids, err)
	}
}
