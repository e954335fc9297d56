package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/pkg/pkg0"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

const usage = `usage: dmsim run --url URL [flags]

flags (each also read from DMSIM_<FLAG>, e.g. DMSIM_URL, DMSIM_DEVICE_ID):
  --url URL              DM server URL (required)
  --device-id ID         DevId of a single device (default IMEI:490154203237518)
  --auth TYPE            none | basic | md5 | hmac (default none)
  --name N --secret S    client credentials (CLCRED); "{devid}" is replaced per device
  --nonce B64            client nonce last issued by the server
  --server-name N --server-secret S --server-nonce B64
                         verify the server's credentials (SRVCRED)
  --encoding xml|wbxml   message encoding (default xml)
  --devices N            simulate N devices from a seeded fleet (default 1)
  --concurrency C        sessions at a time (default 1)
  --seed S               fleet seed (default 1)
  --sessions N           consecutive sessions per device (default 1)
  --session-id HEX       answer a Package 0: Alert 1200 with this session id
  --max-msg-size N       advertised MaxMsgSize (default 10000)
  --timeout D            overall time limit (default 2m)
  --insecure             skip TLS certificate verification
  -v                     print every message as XML
`

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// options are the parsed flags.
type options struct {
	url, deviceID, auth, name, secret, nonce        string
	serverName, serverSecret, serverNonce, encoding string
	sessionID                                       string
	devices, concurrency, sessions, maxMsgSize      int
	seed                                            uint64
	timeout                                         time.Duration
	insecure, verbose                               bool
}

// envName maps a flag name to its environment variable.
func envName(flagName string) string {
	return "DMSIM_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("dmsim run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	str := func(p *string, name, def string) { fs.StringVar(p, name, def, "") }
	str(&o.url, "url", "")
	str(&o.deviceID, "device-id", "IMEI:490154203237518")
	str(&o.auth, "auth", "none")
	str(&o.name, "name", "")
	str(&o.secret, "secret", "")
	str(&o.nonce, "nonce", "")
	str(&o.serverName, "server-name", "")
	str(&o.serverSecret, "server-secret", "")
	str(&o.serverNonce, "server-nonce", "")
	str(&o.encoding, "encoding", "xml")
	str(&o.sessionID, "session-id", "")
	fs.IntVar(&o.devices, "devices", 1, "")
	fs.IntVar(&o.concurrency, "concurrency", 1, "")
	fs.IntVar(&o.sessions, "sessions", 1, "")
	fs.IntVar(&o.maxMsgSize, "max-msg-size", dmsim.DefaultMaxMsgSize, "")
	fs.Uint64Var(&o.seed, "seed", 1, "")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "")
	fs.BoolVar(&o.insecure, "insecure", false, "")
	fs.BoolVar(&o.verbose, "v", false, "")
	// Environment variables set the defaults; flags given on the command line override them.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = usageError{fmt.Sprintf("%s=%q: %v", envName(f.Name), v, err)}
			}
		}
	})
	if envErr != nil {
		return o, envErr
	}
	if err := fs.Parse(args); err != nil {
		return o, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return o, usageError{fmt.Sprintf("unexpected arguments %q", fs.Args())}
	}
	switch {
	case o.url == "":
		return o, usageError{"--url (or DMSIM_URL) is required"}
	case o.devices < 1 || o.concurrency < 1 || o.sessions < 1:
		return o, usageError{"--devices, --concurrency and --sessions must be at least 1"}
	}
	return o, nil
}

func parseAuth(s string) (dmauth.Type, error) {
	switch strings.ToLower(s) {
	case "", "none":
		return "", nil
	case "basic":
		return dmauth.TypeBasic, nil
	case "md5", "digest":
		return dmauth.TypeMD5, nil
	case "hmac", "mac":
		return dmauth.TypeMAC, nil
	}
	t, err := dmauth.ParseType(s)
	if err != nil {
		return "", usageError{fmt.Sprintf("--auth %q: want none, basic, md5 or hmac", s)}
	}
	return t, nil
}

func decodeNonce(flagName, s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	n, err := dmauth.DecodeNonce(s)
	if err != nil {
		return nil, usageError{fmt.Sprintf("--%s: %v", flagName, err)}
	}
	return n, nil
}

// sessionID normalises a Package 0 session id to upper-case hex without leading zeros
// (PROTOCOL.md §2.1).
func sessionID(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s), "0x"), 16, 16)
	if err != nil {
		return "", usageError{fmt.Sprintf("--session-id %q: want a 16-bit hex number", s)}
	}
	return pkg0.SessionIDHex(uint16(v)), nil
}

// baseConfig turns the options into a device configuration.
func baseConfig(o options) (dmsim.Config, error) {
	auth, err := parseAuth(o.auth)
	if err != nil {
		return dmsim.Config{}, err
	}
	enc := syncml.EncodingXML
	switch strings.ToLower(o.encoding) {
	case "xml":
	case "wbxml":
		enc = syncml.EncodingWBXML
	default:
		return dmsim.Config{}, usageError{fmt.Sprintf("--encoding %q: want xml or wbxml", o.encoding)}
	}
	if auth != "" && (o.name == "" || o.secret == "") {
		return dmsim.Config{}, usageError{"--auth needs --name and --secret"}
	}
	cn, err := decodeNonce("nonce", o.nonce)
	if err != nil {
		return dmsim.Config{}, err
	}
	sn, err := decodeNonce("server-nonce", o.serverNonce)
	if err != nil {
		return dmsim.Config{}, err
	}
	return dmsim.Config{
		DevID:        o.deviceID,
		Encoding:     enc,
		MaxMsgSize:   o.maxMsgSize,
		AuthType:     auth,
		ClientName:   o.name,
		ClientSecret: o.secret,
		ClientNonce:  cn,
		ServerName:   o.serverName,
		ServerSecret: o.serverSecret,
		ServerNonce:  sn,
		ServerURL:    o.url,
		LrgObj:       true,
	}, nil
}

// run executes one dmsim invocation.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"no command"}
	}
	switch args[0] {
	case "run":
	case "help", "-h", "--help":
		_, err := io.WriteString(stdout, usage)
		return err
	default:
		return usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	o, err := parseFlags(args[1:])
	if err != nil {
		return err
	}
	base, err := baseConfig(o)
	if err != nil {
		return err
	}
	sid, err := sessionID(o.sessionID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	var fleet *dmsim.Fleet
	perDevice := func(_ int, c *dmsim.Config) {
		c.ClientName = strings.ReplaceAll(c.ClientName, "{devid}", c.DevID)
		c.ClientSecret = strings.ReplaceAll(c.ClientSecret, "{devid}", c.DevID)
	}
	if o.devices == 1 {
		c := base
		perDevice(0, &c)
		fleet = &dmsim.Fleet{Devices: []*dmsim.Device{dmsim.NewDevice(c)}}
	} else {
		fleet = dmsim.NewFleet(o.devices, o.seed, base, perDevice)
	}

	client := &http.Client{}
	if o.insecure {
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // explicit --insecure for test servers
	}
	tr := &dmsim.HTTPTransport{Client: client}
	var outMu sync.Mutex
	opt := dmsim.SessionOptions{SessionID: sid}
	if o.verbose {
		opt.Observe = func(sent bool, msgID int, body []byte, enc syncml.Encoding) {
			outMu.Lock()
			defer outMu.Unlock()
			printMessage(stdout, sent, msgID, body, enc)
		}
	}

	total, failed := 0, 0
	for i := 0; i < o.sessions; i++ {
		for _, r := range fleet.Run(ctx, tr, o.concurrency, opt) {
			total++
			outMu.Lock()
			if r.Report != nil {
				fmt.Fprintln(stdout, r.Report.Summary())
				if o.verbose {
					for _, w := range r.Report.Warnings {
						fmt.Fprintln(stdout, "  warning: "+w)
					}
				}
			}
			if r.Err != nil {
				failed++
				fmt.Fprintln(stderr, "dmsim: "+r.Err.Error())
			}
			outMu.Unlock()
		}
		if sid != "" {
			opt.SessionID = "" // only the first session answers the Package 0
			opt.Initiator = dmsim.InitiatorClient
		}
	}
	fmt.Fprintf(stdout, "%d sessions, %d failed\n", total, failed)
	if failed > 0 {
		return fmt.Errorf("%d of %d sessions failed", failed, total)
	}
	return nil
}

// printMessage writes one message as indented XML (WBXML is decoded first).
func printMessage(w io.Writer, sent bool, msgID int, body []byte, enc syncml.Encoding) {
	dir := "<- server reply to"
	if sent {
		dir = "-> device message"
	}
	fmt.Fprintf(w, "%s %d (%s, %d bytes)\n", dir, msgID, enc, len(body))
	m, _, err := syncml.Decode(body, enc, syncml.Limits{MaxBodyBytes: 64 << 20})
	if err != nil {
		fmt.Fprintf(w, "  (undecodable: %v)\n", err)
		return
	}
	x, err := syncml.AppendXML(nil, m, syncml.XMLOptions{Indent: "  ", OmitDeclaration: true})
	if err != nil {
		fmt.Fprintf(w, "  (not printable as XML: %v)\n", err)
		return
	}
	_, _ = w.Write(x)
}
