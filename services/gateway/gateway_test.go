package gateway

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sessionv1 "github.com/dmgrid/dmgrid/proto/dmgrid/session/v1"

	"github.com/dmgrid/dmgrid/internal/vectors"
	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/syncml"
	"github.com/dmgrid/dmgrid/pkg/syncmlpb"
)

// echoSession is a SessionService that answers every message with a Status for its header,
// recording what the gateway forwarded. It tests the gateway's transport duties; the
// end-to-end suite (internal/e2e) runs the real session workers.
type echoSession struct {
	sessionv1.UnimplementedSessionServiceServer
	calls   atomic.Int64
	last    atomic.Pointer[sessionv1.HandleMessageRequest]
	fail    codes.Code
	failMsg string // the failure's message, "induced" when empty
	auth    *sessionv1.ReplyAuth
}

func (e *echoSession) HandleMessage(ctx context.Context, req *sessionv1.HandleMessageRequest) (*sessionv1.HandleMessageResponse, error) {
	e.calls.Add(1)
	e.last.Store(req)
	if e.fail != codes.OK {
		msg := e.failMsg
		if msg == "" {
			msg = "induced"
		}
		return nil, status.Error(e.fail, msg)
	}
	h := req.Message.Header
	reply := &syncml.Message{Header: syncml.Header{VerDTD: h.VerDtd, VerProto: h.VerProto, SessionID: h.SessionId, MsgID: "1",
		Target: syncml.Locator{LocURI: h.Source.GetLocUri()}, Source: syncml.Locator{LocURI: h.Target.GetLocUri()}}}
	reply.Body.Commands = []syncml.Command{{Kind: syncml.KindStatus, CmdID: "1", MsgRef: h.MsgId, CmdRef: "0", Cmd: "SyncHdr", Data: "212"}}
	reply.Body.Final = true
	return &sessionv1.HandleMessageResponse{Reply: syncmlpb.ToProto(reply), HttpStatus: 200, ReplyAuth: e.auth}, nil
}

func newGateway(t *testing.T, sess *echoSession) (*Gateway, *httptest.Server) {
	t.Helper()
	return newGatewayLog(t, sess, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// newGatewayLog is newGateway logging to log.
func newGatewayLog(t *testing.T, sess *echoSession, log *slog.Logger) (*Gateway, *httptest.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	sessionv1.RegisterSessionServiceServer(g, sess)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	gw, err := New(Config{Path: "/dm", SessionAddr: lis.Addr().String(), MaxBodyBytes: 64 << 10, RequestTimeout: 5 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)
	return gw, srv
}

func post(t *testing.T, url, ct string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readAll(t *testing.T, r *http.Response) []byte {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestForwardsAndRepliesInTheRequestEncoding(t *testing.T) {
	sess := &echoSession{}
	_, srv := newGateway(t, sess)
	for _, f := range []string{"01_pkg1_client_init.xml", "01_pkg1_client_init.wbxml", "01_pkg1_client_init.fpi-strtbl.wbxml", "01_pkg1_client_init.st.wbxml"} {
		t.Run(f, func(t *testing.T) {
			body := vectors.Read(t, "messages/"+f)
			enc := syncml.Sniff(body)
			resp := post(t, srv.URL+"/dm", enc.ContentType(), body)
			out := readAll(t, resp)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != enc.ContentType() {
				t.Fatalf("status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			if resp.ContentLength != int64(len(out)) || resp.TransferEncoding != nil {
				t.Fatalf("Content-Length %d for %d bytes (transfer-encoding %v)", resp.ContentLength, len(out), resp.TransferEncoding)
			}
			m, _, err := syncml.Decode(out, enc, syncml.Limits{})
			if err != nil || m.Body.Commands[0].Data != "212" {
				t.Fatalf("reply: %v", err)
			}
			req := sess.last.Load()
			tr := req.Transport
			if tr.BodyMd5 != dmauth.BodyHash(body) || tr.BodySize != int64(len(body)) || tr.Encoding != syncmlpb.EncodingToProto(enc) {
				t.Fatalf("transport facts wrong: %+v", tr)
			}
			if req.Message.Header.Source.LocUri != "IMEI:493005100592800" {
				t.Fatalf("forwarded message: %+v", req.Message.Header)
			}
			if enc == syncml.EncodingWBXML {
				// The reply mirrors the client's WBXML flavour (version, FPI form).
				if out[0] != body[0] || (out[1] == 0) != (body[1] == 0) {
					t.Fatalf("reply header % x does not mirror request % x", out[:3], body[:3])
				}
			}
		})
	}
}

// TestAcceptsSyncMLDSContentTypes: libdmclient's test client sends the DS media types
// (PROTOCOL.md §12.1).
func TestAcceptsSyncMLDSContentTypes(t *testing.T) {
	_, srv := newGateway(t, &echoSession{})
	for ct, f := range map[string]string{
		"application/vnd.syncml+xml":                   "01_pkg1_client_init.xml",
		"application/vnd.syncml+wbxml":                 "01_pkg1_client_init.wbxml",
		"application/vnd.syncml.dm+xml; charset=UTF-8": "01_pkg1_client_init.xml",
	} {
		resp := post(t, srv.URL+"/dm", ct, vectors.Read(t, "messages/"+f))
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d", ct, resp.StatusCode)
		}
	}
}

// TestAcceptsWrongContentTypeBySniffing: a body that is plainly XML or WBXML is accepted
// whatever the Content-Type says (PROTOCOL.md §12.1).
func TestAcceptsWrongContentTypeBySniffing(t *testing.T) {
	_, srv := newGateway(t, &echoSession{})
	resp := post(t, srv.URL+"/dm", "text/plain", append([]byte("\r\n  "), vectors.Read(t, "messages/01_pkg1_client_init.xml")...))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != syncml.ContentTypeXML {
		t.Fatalf("status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestBadInputGetsHTTPErrorsAndNoCall(t *testing.T) {
	sess := &echoSession{}
	_, srv := newGateway(t, sess)
	xml := vectors.Read(t, "messages/01_pkg1_client_init.xml")
	cases := []struct {
		name string
		ct   string
		body []byte
		code int
	}{
		{"not syncml at all", "text/plain", []byte("hello"), 415},
		{"malformed xml", syncml.ContentTypeXML, xml[:len(xml)/2], 400},
		{"malformed wbxml", syncml.ContentTypeWBXML, []byte{0x02, 0xA4, 0x01, 0x6A, 0x00, 0x6D, 0x6C}, 400},
		{"entity bomb", syncml.ContentTypeXML, []byte(`<!DOCTYPE x [<!ENTITY a "aaaa">]><SyncML>&a;</SyncML>`), 400},
		{"oversized", syncml.ContentTypeXML, append(bytes.Repeat([]byte(" "), 70<<10), xml...), 413},
		{"empty", syncml.ContentTypeXML, nil, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := post(t, srv.URL+"/dm", c.ct, c.body)
			if resp.StatusCode != c.code {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, c.code, readAll(t, resp))
			}
		})
	}
	if n := sess.calls.Load(); n != 0 {
		t.Fatalf("bad input reached the session workers %d times", n)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/dm", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
}

// countingListener counts the bytes the server reads from its connections.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: &l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestOversizedRefusedBeforeReading: a body declared larger than the limit is refused from
// the header alone, so the gateway never reads it.
func TestOversizedRefusedBeforeReading(t *testing.T) {
	gw, _ := newGateway(t, &echoSession{})
	lis := &countingListener{Listener: newLocalListener(t)}
	srv := httptest.NewUnstartedServer(gw.Handler())
	srv.Listener = lis
	srv.Start()
	t.Cleanup(srv.Close)
	oversized := func(ctx context.Context, body io.Reader) *http.Request {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/dm", body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = 1 << 30
		req.Header.Set("Content-Type", syncml.ContentTypeXML)
		return req
	}

	t.Run("body withheld", func(t *testing.T) {
		// The headers go out, not one byte of the body: only a gateway that answers from
		// the header alone can reply before the deadline.
		pr, pw := io.Pipe()
		defer pw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// A cancelled round trip waits for its body writer, which waits on the pipe.
		context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		resp, err := tr.RoundTrip(oversized(ctx, pr))
		if err != nil {
			t.Fatalf("no reply while the body was withheld (the gateway waited for it): %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413", resp.StatusCode)
		}
	})

	t.Run("body streamed", func(t *testing.T) {
		// The body is there to read. The client may get the 413 or, when the gateway closes
		// the connection while the body is still being sent, a write error; either way the
		// gateway must have read less than the body limit (reading the body through the
		// limit takes MaxBodyBytes+1 bytes).
		lis.n.Store(0)
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		body := io.MultiReader(strings.NewReader("<SyncML>"), endless(' '))
		resp, err := tr.RoundTrip(oversized(context.Background(), body))
		if err == nil {
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413", resp.StatusCode)
			}
		}
		srv.CloseClientConnections() // the server's reads have ended once its connections have
		if n := lis.n.Load(); n == 0 || n >= gw.cfg.MaxBodyBytes {
			t.Fatalf("the gateway read %d bytes of the connection (limit %d; client error: %v)", n, gw.cfg.MaxBodyBytes, err)
		}
	})
}

// endless is a reader of one byte repeated.
type endless byte

func (e endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(e)
	}
	return len(p), nil
}

func newLocalListener(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

func TestSessionWorkerOutageIs503(t *testing.T) {
	_, srv := newGateway(t, &echoSession{fail: codes.Unavailable})
	resp := post(t, srv.URL+"/dm", syncml.ContentTypeXML, vectors.Read(t, "messages/01_pkg1_client_init.xml"))
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// syncBuffer is a log destination the test reads while the server may write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWorkerErrorTextNotSentToDevices: what a session worker's error says (Redis errors,
// addresses) is logged, never sent to the device; the status and Retry-After stay.
func TestWorkerErrorTextNotSentToDevices(t *testing.T) {
	const marker = "load state: dial tcp 10.1.2.3:6379: MARKER-7f3a"
	for c, want := range map[codes.Code]int{codes.Unavailable: 503, codes.ResourceExhausted: 503, codes.Internal: 500, codes.InvalidArgument: 400} {
		t.Run(c.String(), func(t *testing.T) {
			var logs syncBuffer
			_, srv := newGatewayLog(t, &echoSession{fail: c, failMsg: marker}, slog.New(slog.NewTextHandler(&logs, nil)))
			resp := post(t, srv.URL+"/dm", syncml.ContentTypeXML, vectors.Read(t, "messages/01_pkg1_client_init.xml"))
			body := readAll(t, resp)
			if resp.StatusCode != want || (want == 503) != (resp.Header.Get("Retry-After") != "") {
				t.Fatalf("status %d, want %d; Retry-After %q", resp.StatusCode, want, resp.Header.Get("Retry-After"))
			}
			if strings.Contains(string(body), "MARKER") || strings.Contains(string(body), "10.1.2.3") {
				t.Fatalf("the worker's error reached the device: %q", body)
			}
			if len(bytes.TrimSpace(body)) == 0 {
				t.Fatal("empty error body")
			}
			if l := logs.String(); !strings.Contains(l, "MARKER-7f3a") || !strings.Contains(l, "IMEI:493005100592800") {
				t.Fatalf("the error and the device are not logged: %s", l)
			}
		})
	}
}

func TestReplyHMAC(t *testing.T) {
	key := dmauth.Key("srv", "secret")
	nonce := []byte("0123456789abcdef")
	_, srv := newGateway(t, &echoSession{auth: &sessionv1.ReplyAuth{Username: "srv", KeyB64Md5: key, Nonce: nonce}})
	resp := post(t, srv.URL+"/dm", syncml.ContentTypeWBXML, vectors.Read(t, "messages/01_pkg1_client_init.wbxml"))
	out := readAll(t, resp)
	h, err := dmauth.ParseHMACHeader(resp.Header.Get(dmauth.HMACHeaderName))
	if err != nil {
		t.Fatalf("reply header: %v", err)
	}
	if h.Username != "srv" || !dmauth.VerifyHMAC(h, key, nonce, out) {
		t.Fatalf("reply MAC does not verify over the reply body: %+v", h)
	}
}

func TestReadinessAndLameDuck(t *testing.T) {
	gw, srv := newGateway(t, &echoSession{})
	get := func(p string) int {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if get("/healthz") != 200 || get("/readyz") != 200 {
		t.Fatal("not healthy/ready")
	}
	gw.SetReady(false) // what Serve does when its context ends, before shutting down
	if get("/readyz") != 503 || get("/healthz") != 200 {
		t.Fatal("lame duck must fail readiness and keep liveness")
	}
	// Still serving while draining.
	resp := post(t, srv.URL+"/dm", syncml.ContentTypeXML, vectors.Read(t, "messages/01_pkg1_client_init.xml"))
	if resp.StatusCode != 200 {
		t.Fatalf("lame duck refused a request: %d", resp.StatusCode)
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{"DMGRID_SESSION_ADDR": "a:1,b:2", "DMGRID_MAX_BODY_BYTES": "2048"}
	c, err := ConfigFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil || c.MaxBodyBytes != 2048 || c.HTTPAddr != ":8080" || c.MetricsAddr != ":9102" {
		t.Fatalf("%+v %v", c, err)
	}
	// An empty DMGRID_METRICS_ADDR turns /metrics off (unset is the default).
	env["DMGRID_METRICS_ADDR"] = ""
	if c, err := ConfigFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil || c.MetricsAddr != "" {
		t.Fatalf("DMGRID_METRICS_ADDR=\"\": %q %v", c.MetricsAddr, err)
	}
	env = map[string]string{"DMGRID_MAX_BODY_BYTES": "x", "DMGRID_TLS_CERT_FILE": "c.pem"}
	if _, err := ConfigFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err == nil ||
		!strings.Contains(err.Error(), "DMGRID_MAX_BODY_BYTES") {
		t.Fatalf("bad config accepted: %v", err)
	}
}
