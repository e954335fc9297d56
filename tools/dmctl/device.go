package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"
)

var authTypes = map[string]devicev1.AuthType{
	"none":  devicev1.AuthType_AUTH_TYPE_NONE,
	"basic": devicev1.AuthType_AUTH_TYPE_BASIC,
	"md5":   devicev1.AuthType_AUTH_TYPE_MD5,
	"hmac":  devicev1.AuthType_AUTH_TYPE_HMAC,
}

func authTypeName(t devicev1.AuthType) string {
	for n, v := range authTypes {
		if v == t {
			return n
		}
	}
	if t == devicev1.AuthType_AUTH_TYPE_UNSPECIFIED {
		return "none"
	}
	return t.String()
}

func deviceCmd(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	if len(args) < 1 {
		return usageError{"device needs a subcommand: create, get, list or delete"}
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "create":
		return deviceCreate(ctx, g, args, stdout, stderr)
	case "get":
		return deviceGet(ctx, g, args, stdout, stderr)
	case "list":
		return deviceList(ctx, g, args, stdout, stderr)
	case "delete":
		return deviceDelete(ctx, g, args, stdout, stderr)
	}
	return usageError{fmt.Sprintf("unknown device subcommand %q", sub)}
}

// authFlags are one direction's credential flags.
type authFlags struct {
	typ, name, secret string
}

func (a *authFlags) register(fs *flag.FlagSet, side string) {
	fs.StringVar(&a.typ, side+"-auth", "", "authentication: none, basic, md5 or hmac")
	fs.StringVar(&a.name, side+"-name", "", "account name")
	fs.StringVar(&a.secret, side+"-secret", "", "secret (or env DMCTL_"+strings.ToUpper(side)+"_SECRET)")
}

// config builds the AuthConfig; the secret comes from the flag or else from env.
func (a *authFlags) config(side, env string) (*devicev1.AuthConfig, error) {
	t, ok := authTypes[a.typ]
	if !ok {
		return nil, usageError{fmt.Sprintf("--%s-auth must be none, basic, md5 or hmac, not %q", side, a.typ)}
	}
	cfg := &devicev1.AuthConfig{Type: t, Name: a.name, Secret: a.secret}
	if t != devicev1.AuthType_AUTH_TYPE_NONE && cfg.Secret == "" {
		cfg.Secret = os.Getenv(env)
	}
	return cfg, nil
}

func deviceCreate(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	var client, server authFlags
	var serverID, msisdn, requestID string
	labels := labelsFlag{}
	c, pos, err := apiCommand(ctx, g, "device create", args, stdout, stderr, 1, 1, func(fs *flag.FlagSet) {
		client.register(fs, "client")
		server.register(fs, "server")
		fs.StringVar(&serverID, "server-id", "", "the device's DMAcc ServerID")
		fs.StringVar(&msisdn, "msisdn", "", "E.164 phone number for wake-up SMS")
		fs.Var(labels, "label", "key=value (repeatable)")
		fs.StringVar(&requestID, "request-id", "", "idempotency key")
	})
	if err != nil {
		return err
	}
	defer c.close()
	if client.typ == "" {
		return usageError{"device create needs --client-auth none|basic|md5|hmac"}
	}
	dev := &devicev1.Device{DeviceId: pos[0], ServerId: serverID, Msisdn: msisdn}
	if len(labels) > 0 {
		dev.Labels = labels
	}
	if dev.ClientAuth, err = client.config("client", "DMCTL_CLIENT_SECRET"); err != nil {
		return err
	}
	if server.typ != "" {
		if dev.ServerAuth, err = server.config("server", "DMCTL_SERVER_SECRET"); err != nil {
			return err
		}
	} else if server.name != "" || server.secret != "" {
		return usageError{"--server-name and --server-secret need --server-auth"}
	}
	cctx, cancel := c.call()
	defer cancel()
	resp, err := devicev1.NewDeviceServiceClient(c.conn).CreateDevice(cctx, &devicev1.CreateDeviceRequest{Device: dev, RequestId: requestID})
	if err != nil {
		return err
	}
	return c.printDevice(resp.GetDevice())
}

func deviceGet(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	c, pos, err := apiCommand(ctx, g, "device get", args, stdout, stderr, 1, 1, nil)
	if err != nil {
		return err
	}
	defer c.close()
	cctx, cancel := c.call()
	defer cancel()
	resp, err := devicev1.NewDeviceServiceClient(c.conn).GetDevice(cctx, &devicev1.GetDeviceRequest{DeviceId: pos[0]})
	if err != nil {
		return err
	}
	return c.printDevice(resp.GetDevice())
}

func deviceList(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	labels := labelsFlag{}
	var size int
	var token string
	var all bool
	c, _, err := apiCommand(ctx, g, "device list", args, stdout, stderr, 0, 0, func(fs *flag.FlagSet) {
		fs.Var(labels, "label", "key=value (repeatable)")
		fs.IntVar(&size, "page-size", 0, "devices per page")
		fs.StringVar(&token, "page-token", "", "page to start at")
		fs.BoolVar(&all, "all", false, "follow page tokens to the end")
	})
	if err != nil {
		return err
	}
	defer c.close()
	n, err := pageSize(size)
	if err != nil {
		return err
	}
	req := &devicev1.ListDevicesRequest{PageSize: n, PageToken: token}
	if len(labels) > 0 {
		req.Labels = labels
	}
	api := devicev1.NewDeviceServiceClient(c.conn)
	out := &devicev1.ListDevicesResponse{}
	out.NextPageToken, err = c.pages("devices", req.PageToken, all, func(ctx context.Context, token string) (string, error) {
		req.PageToken = token
		resp, err := api.ListDevices(ctx, req)
		if err != nil {
			return "", err
		}
		out.Devices = append(out.Devices, resp.GetDevices()...)
		return resp.GetNextPageToken(), nil
	})
	if err != nil {
		return err
	}
	for _, d := range out.Devices {
		scrubDevice(d)
	}
	if c.json() {
		return c.printJSON(out)
	}
	t := c.table()
	t.row("DEVICE_ID", "CLIENT_AUTH", "MSISDN", "LABELS", "CREATED")
	for _, d := range out.Devices {
		t.row(d.GetDeviceId(), authSummary(d.GetClientAuth()), orDash(d.GetMsisdn()), orDash(formatLabels(d.GetLabels())), formatTime(d.GetCreateTime()))
	}
	if err := t.end(); err != nil {
		return err
	}
	if out.NextPageToken != "" {
		fmt.Fprintf(c.stderr, "dmctl: more devices: --page-token %s (or --all)\n", out.NextPageToken)
	}
	return nil
}

func deviceDelete(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	var etag string
	c, pos, err := apiCommand(ctx, g, "device delete", args, stdout, stderr, 1, 1, func(fs *flag.FlagSet) {
		fs.StringVar(&etag, "etag", "", "delete only if the device still has this etag")
	})
	if err != nil {
		return err
	}
	defer c.close()
	cctx, cancel := c.call()
	defer cancel()
	resp, err := devicev1.NewDeviceServiceClient(c.conn).DeleteDevice(cctx, &devicev1.DeleteDeviceRequest{DeviceId: pos[0], Etag: etag})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	return c.write([]byte("deleted " + pos[0] + "\n"))
}

// scrubDevice clears secrets. The API never returns them; dmctl makes sure it never prints
// one even from a server that did.
func scrubDevice(d *devicev1.Device) {
	if d.GetClientAuth() != nil {
		d.ClientAuth.Secret = ""
	}
	if d.GetServerAuth() != nil {
		d.ServerAuth.Secret = ""
	}
}

func authSummary(a *devicev1.AuthConfig) string {
	s := authTypeName(a.GetType())
	if a.GetName() != "" {
		s += " " + a.GetName()
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *client) printDevice(d *devicev1.Device) error {
	scrubDevice(d)
	if c.json() {
		return c.printJSON(d)
	}
	t := c.table()
	t.row("device_id:", d.GetDeviceId())
	t.row("client_auth:", authSummary(d.GetClientAuth()))
	t.row("server_auth:", authSummary(d.GetServerAuth()))
	t.row("server_id:", orDash(d.GetServerId()))
	t.row("msisdn:", orDash(d.GetMsisdn()))
	t.row("labels:", orDash(formatLabels(d.GetLabels())))
	t.row("create_time:", formatTime(d.GetCreateTime()))
	t.row("update_time:", formatTime(d.GetUpdateTime()))
	t.row("etag:", orDash(d.GetEtag()))
	return t.end()
}
