package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/pkg0"
	"github.com/dmgrid/dmgrid/pkg/wappush"
)

// pkg0SecretEnv holds the server secret when --secret is left out.
const pkg0SecretEnv = "DMCTL_PKG0_SECRET"

// pkg0TID is the WSP transaction id of pushes built by "pkg0 build --wsp"
// (the value the shared vectors use).
const pkg0TID = 0x01

// pkg0Cmd runs "dmctl pkg0 build|decode": Package 0 notifications
// (OMA-TS-DM_Notification §6.2, PROTOCOL.md §9) offline.
func pkg0Cmd(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) < 1 {
		return usageError{"pkg0 needs a subcommand: build or decode"}
	}
	switch args[0] {
	case "build":
		return pkg0Build(args[1:], stdout)
	case "decode":
		return pkg0Decode(args[1:], stdin, stdout)
	}
	return usageError{fmt.Sprintf("unknown pkg0 subcommand %q", args[0])}
}

// pkg0Flags parses fs and rejects positional arguments.
func pkg0Flags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// pkg0FlagGiven reports whether the flag was given on the command line.
func pkg0FlagGiven(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// pkg0Hex decodes a hex flag value; a leading "0x" is allowed.
func pkg0Hex(name, v string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimPrefix(strings.TrimPrefix(v, "0x"), "0X"))
	if err != nil {
		return nil, usageError{fmt.Sprintf("--%s must be hex: %v", name, err)}
	}
	return b, nil
}

// pkg0SessionID accepts decimal or 0x-hex, 0..65535.
func pkg0SessionID(v string) (uint16, error) {
	var (
		n   uint64
		err error
	)
	if h, ok := strings.CutPrefix(strings.ToLower(v), "0x"); ok {
		n, err = strconv.ParseUint(h, 16, 16)
	} else {
		n, err = strconv.ParseUint(v, 10, 16)
	}
	if err != nil {
		return 0, usageError{fmt.Sprintf("--session-id must be 0..65535 in decimal or 0x-hex, not %q", v)}
	}
	return uint16(n), nil
}

var pkg0UIModes = map[string]pkg0.UIMode{
	"0": pkg0.UIModeNotSpecified, "not-specified": pkg0.UIModeNotSpecified,
	"1": pkg0.UIModeBackground, "background": pkg0.UIModeBackground,
	"2": pkg0.UIModeInformative, "informative": pkg0.UIModeInformative,
	"3": pkg0.UIModeUserInteraction, "user-interaction": pkg0.UIModeUserInteraction,
}

var pkg0Initiators = map[string]pkg0.Initiator{
	"server": pkg0.InitiatorServer, "1": pkg0.InitiatorServer,
	"client": pkg0.InitiatorClient, "user": pkg0.InitiatorClient, "0": pkg0.InitiatorClient,
}

func pkg0Build(args []string, stdout io.Writer) error {
	fs := newFlagSet("dmctl pkg0 build")
	serverID := fs.String("server-id", "", "DMAcc ServerID (also the digest's name)")
	secret := fs.String("secret", "", "server secret (or env "+pkg0SecretEnv+")")
	nonceHex := fs.String("nonce", "", "server nonce, hex")
	session := fs.String("session-id", "", "session id, decimal or 0x-hex")
	ui := fs.String("ui-mode", "", "ui-mode 0..3")
	initiator := fs.String("initiator", "server", "server or client")
	version := fs.Uint("version", pkg0.DefaultVersion, "notification version ×10")
	vendorHex := fs.String("vendor", "", "vendor-specific bytes, hex")
	wsp := fs.Bool("wsp", false, "write the whole WSP push PDU")
	asHex := fs.Bool("hex", false, "write hex text instead of bytes")
	if err := pkg0Flags(fs, args); err != nil {
		return err
	}
	if *serverID == "" {
		return usageError{"pkg0 build needs --server-id"}
	}
	if *secret == "" {
		*secret = os.Getenv(pkg0SecretEnv)
	}
	if *secret == "" {
		return usageError{"pkg0 build needs --secret or env " + pkg0SecretEnv}
	}
	if !pkg0FlagGiven(fs, "nonce") {
		return usageError{"pkg0 build needs --nonce (hex; 00000000 is the resync nonce)"}
	}
	if !pkg0FlagGiven(fs, "session-id") || !pkg0FlagGiven(fs, "ui-mode") {
		return usageError{"pkg0 build needs --session-id and --ui-mode"}
	}
	nonce, err := pkg0Hex("nonce", *nonceHex)
	if err != nil {
		return err
	}
	vendor, err := pkg0Hex("vendor", *vendorHex)
	if err != nil {
		return err
	}
	sid, err := pkg0SessionID(*session)
	if err != nil {
		return err
	}
	mode, ok := pkg0UIModes[strings.ToLower(*ui)]
	if !ok {
		return usageError{fmt.Sprintf("--ui-mode must be 0..3, not %q", *ui)}
	}
	ini, ok := pkg0Initiators[strings.ToLower(*initiator)]
	if !ok {
		return usageError{fmt.Sprintf("--initiator must be server or client, not %q", *initiator)}
	}
	if *version > pkg0.MaxVersion {
		return usageError{fmt.Sprintf("--version must be 0..%d, not %d", pkg0.MaxVersion, *version)}
	}
	if len(vendor) == 0 {
		vendor = nil
	}
	t := pkg0.Trigger{Version: uint16(*version), UIMode: mode, Initiator: ini, SessionID: sid,
		ServerID: *serverID, Vendor: vendor}
	out, err := pkg0.Build(t, dmauth.Key(*serverID, *secret), nonce)
	if err != nil {
		return fmt.Errorf("build package 0: %w", err)
	}
	if *wsp {
		out = wappush.DMNotificationPDU(pkg0TID, out)
	}
	if *asHex {
		out = []byte(hex.EncodeToString(out) + "\n")
	}
	if _, err := stdout.Write(out); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// pkg0Report is the JSON printed by "pkg0 decode".
type pkg0Report struct {
	Input        string `json:"input"`
	Version      uint16 `json:"version"`
	UIMode       uint8  `json:"ui_mode"`
	Initiator    string `json:"initiator"`
	SessionID    uint16 `json:"session_id"`
	SessionIDHex string `json:"session_id_hex"`
	ServerID     string `json:"server_id"`
	VendorHex    string `json:"vendor_hex"`
	DigestHex    string `json:"digest_hex"`
	DigestOK     *bool  `json:"digest_ok,omitempty"`
	ResyncNonce  bool   `json:"resync_nonce,omitempty"`
}

func pkg0Decode(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := newFlagSet("dmctl pkg0 decode")
	serverID := fs.String("server-id", "", "name for the digest (default: the server id in the trigger)")
	secret := fs.String("secret", "", "server secret (or env "+pkg0SecretEnv+"); checks the digest")
	nonceHex := fs.String("nonce", "", "server nonce, hex")
	input := fs.String("input", "auto", "auto, pkg0, wsp or sms")
	asHex := fs.Bool("hex", false, "stdin is hex text")
	if err := pkg0Flags(fs, args); err != nil {
		return err
	}
	// The digest is checked when --secret is given (then --nonce is required)
	// or when the env secret is set and --nonce is given: an exported secret
	// alone does not turn a plain decode into a usage error.
	if *secret == "" && pkg0FlagGiven(fs, "nonce") {
		*secret = os.Getenv(pkg0SecretEnv)
	}
	var nonce []byte
	if *secret != "" {
		if !pkg0FlagGiven(fs, "nonce") {
			return usageError{"checking the digest needs --nonce (hex)"}
		}
		var err error
		if nonce, err = pkg0Hex("nonce", *nonceHex); err != nil {
			return err
		}
	}
	switch *input {
	case "auto", "pkg0", "wsp", "sms":
	default:
		return usageError{fmt.Sprintf("--input must be auto, pkg0, wsp or sms, not %q", *input)}
	}
	in, err := readInput(stdin)
	if err != nil {
		return err
	}
	if *asHex {
		txt := strings.Join(strings.Fields(string(in)), "")
		if in, err = hex.DecodeString(txt); err != nil {
			return fmt.Errorf("decode hex input: %w", err)
		}
	}
	if len(in) == 0 {
		return errors.New("pkg0 decode: empty input")
	}
	kind, raw, err := pkg0Unwrap(in, *input)
	if err != nil {
		return err
	}
	p, err := pkg0.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s input: %w", kind, err)
	}
	t := p.Trigger
	rep := pkg0Report{
		Input: kind, Version: t.Version, UIMode: uint8(t.UIMode), Initiator: t.Initiator.String(),
		SessionID: t.SessionID, SessionIDHex: pkg0.SessionIDHex(t.SessionID), ServerID: t.ServerID,
		VendorHex: hex.EncodeToString(t.Vendor), DigestHex: hex.EncodeToString(p.Digest[:]),
	}
	if *secret != "" {
		name := *serverID
		if name == "" {
			name = t.ServerID
		}
		ok, resync := p.VerifyWithResync(dmauth.Key(name, *secret), nonce)
		rep.DigestOK, rep.ResyncNonce = &ok, resync
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	if _, err := stdout.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// pkg0Unwrap returns the Package 0 bytes inside b and what b was: "pkg0",
// "wsp" (a WSP push PDU, byte 1 = 0x06) or "sms" (TP-User-Data with a UDH
// holding WDP ports). "auto" tries wsp, then sms, then raw pkg0, and reports
// the error of the most plausible form.
func pkg0Unwrap(b []byte, input string) (string, []byte, error) {
	switch input {
	case "pkg0":
		return "pkg0", b, nil
	case "wsp":
		body, err := pkg0PushBody(b)
		if err != nil {
			return "", nil, fmt.Errorf("wsp input: %w", err)
		}
		return "wsp", body, nil
	case "sms":
		body, err := pkg0SMSBody(b)
		return "sms", body, err
	}
	var firstErr error
	if len(b) > 1 && b[1] == wappush.PDUTypePush {
		body, err := pkg0PushBody(b)
		if err == nil {
			_, err = pkg0.Parse(body)
		}
		if err == nil {
			return "wsp", body, nil
		}
		firstErr = fmt.Errorf("wsp input: %w", err)
	}
	// A UDH with WDP ports followed by a push PDU (or a concatenation IE) is
	// SMS user data; a raw Package 0 practically never looks like that.
	if h, payload, err := wappush.ParseUDH(b); err == nil && h.HasPorts &&
		(h.Concatenated || len(payload) > 1 && payload[1] == wappush.PDUTypePush) {
		body, err := pkg0SMSBody(b)
		if err != nil {
			return "", nil, err
		}
		return "sms", body, nil
	}
	if _, err := pkg0.Parse(b); err != nil && firstErr != nil {
		return "", nil, firstErr
	}
	return "pkg0", b, nil
}

// pkg0PushBody returns the body of a WSP push PDU addressed to the DM client.
func pkg0PushBody(b []byte) ([]byte, error) {
	p, err := wappush.ParsePushPDU(b)
	if err != nil {
		return nil, err
	}
	if !p.IsDMNotification() {
		ct := p.ContentTypeText
		if ct == "" {
			ct = fmt.Sprintf("0x%02X", p.ContentType)
		}
		app := p.AppIDText
		if app == "" {
			app = fmt.Sprintf("0x%02X", p.AppID)
		}
		if !p.HasAppID {
			app = "none"
		}
		return nil, fmt.Errorf("not a DM notification push (content type %s, application id %s)", ct, app)
	}
	return p.Body, nil
}

// pkg0SMSBody returns the Package 0 inside one SMS's TP-User-Data.
func pkg0SMSBody(b []byte) ([]byte, error) {
	h, payload, err := wappush.ParseUDH(b)
	if err != nil {
		return nil, fmt.Errorf("sms input: %w", err)
	}
	if h.Concatenated && h.Total > 1 {
		return nil, fmt.Errorf("sms input: segment %d of %d (reference %d): decode needs the reassembled push PDU", h.Seq, h.Total, h.Ref)
	}
	body, err := pkg0PushBody(payload)
	if err != nil {
		return nil, fmt.Errorf("sms input: push PDU: %w", err)
	}
	return body, nil
}
