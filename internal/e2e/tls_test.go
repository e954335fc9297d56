package e2e

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"

	"github.com/dmgrid/dmgrid/internal/grpctls"
	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// TestSessionOverMutualTLS: a device session through gateway → mutual TLS → session workers
// (the stack's Options.TLS), with commands enqueued and read back over the same TLS API; the
// real workers refuse a plaintext client and a TLS client without a certificate.
func TestSessionOverMutualTLS(t *testing.T) {
	st := Start(t, Options{Workers: 2, TLS: true})
	id := "IMEI:tls-1"
	d := provision(t, st, id, dmauth.TypeMD5, syncml.EncodingWBXML, nil)
	cmds := enqueue(t, st, id, commandv1.Group_GROUP_UNSPECIFIED, get("./DevDetail/FwV"))
	rep := run(t, d, dmsim.SessionOptions{})
	if !rep.Authenticated || !rep.Ended {
		t.Fatalf("session: %+v", rep)
	}
	if c := command(t, st, cmds[0].CommandId); c.State != commandv1.Command_STATE_COMPLETED || string(c.Results[0].Data) != "fw-"+id {
		t.Fatalf("Get FwV = %v %v", c.State, c.Results)
	}
	handled := st.Workers[0].Sessions.Handled.Load() + st.Workers[1].Sessions.Handled.Load()
	if handled < 2 {
		t.Fatalf("workers handled %d messages", handled)
	}

	for name, c := range map[string]grpctls.ClientConfig{
		"plaintext":             {},
		"no client certificate": {CAFile: st.TLS.CA.CAFile},
	} {
		conn, err := DialWorkersTLS(st.GRPCAddrs, c)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = devicev1.NewDeviceServiceClient(conn).GetDevice(ctx, &devicev1.GetDeviceRequest{DeviceId: id})
		cancel()
		conn.Close()
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s client: %v, want Unavailable (refused)", name, err)
		}
	}
}
