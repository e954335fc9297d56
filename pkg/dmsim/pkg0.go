package dmsim

import (
	"errors"
	"fmt"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/pkg0"
	"github.com/dmgrid/dmgrid/pkg/wappush"
)

// Sentinel errors of Package 0 reception; the concrete error is *Package0Error.
var (
	// ErrNotNotification: the SMS or push PDU is not addressed to the DM client (WDP port
	// 2948, content type application/vnd.syncml.notification, app id syncml.dm).
	ErrNotNotification = errors.New("not a DM notification")
	// ErrMalformedPackage0: the bytes do not decode (UDH, WSP or Package 0 layout).
	ErrMalformedPackage0 = errors.New("malformed notification")
	// ErrUnknownServer: the trigger's server identifier is not the device's DMAcc ServerID.
	ErrUnknownServer = errors.New("notification from an unknown server")
	// ErrDigest: the digest matches neither the stored server nonce nor the resync nonce
	// (forged, or signed with a stale nonce).
	ErrDigest = errors.New("notification digest mismatch")
	// ErrUnsupportedVersion: a trigger version the client does not implement.
	ErrUnsupportedVersion = errors.New("unsupported notification version")
)

// Package0Error says why a notification was rejected.
type Package0Error struct {
	Reason string
	Err    error
}

func (e *Package0Error) Error() string { return "dmsim: package 0: " + e.Reason + ": " + e.Err.Error() }

// Unwrap exposes the sentinel.
func (e *Package0Error) Unwrap() error { return e.Err }

// Package0 is an accepted notification.
type Package0 struct {
	// SessionID is the SessionID for the Pkg1 (SessionOptions.SessionID): upper-case hex
	// without leading zeros (OMA-TS-DM_Notification §6.2.2.10).
	SessionID string
	// Trigger holds the decoded trigger.
	Trigger pkg0.Trigger
	// Resync is true when the digest matched only the resynchronisation nonce (four zero
	// bytes, PROTOCOL.md §7.4): the device then builds its credentials on that nonce.
	Resync bool
}

// Accepted trigger versions: 11 is what OMA DM 1.2.1 requires (OMA-TS-DM_Notification
// §6.2.2.6); 12 is accepted because some servers send it (PROTOCOL.md §9.1, vector p4).
var acceptedVersions = map[uint16]bool{pkg0.DefaultVersion: true, 12: true}

// ReceivePackage0 takes the TP-User-Data of the SMS that carried a notification (each with
// its user data header, in any order), checks it the way a DM client does and returns the
// SessionID for RunSession. Concatenated segments are reassembled (3GPP TS 23.040
// §9.2.3.24.1); the WDP destination port must be 2948 and the WSP push must be a DM
// notification (OMA-TS-DM_Notification §6.3.1.1); then see ReceiveWAPPush.
func (d *Device) ReceivePackage0(sms [][]byte) (string, error) {
	p, err := d.ReceivePackage0Info(sms)
	if err != nil {
		return "", err
	}
	return p.SessionID, nil
}

// ReceivePackage0Info is ReceivePackage0 returning the whole accepted notification.
func (d *Device) ReceivePackage0Info(sms [][]byte) (Package0, error) {
	bad := func(reason string, err error) (Package0, error) {
		return Package0{}, &Package0Error{Reason: reason, Err: err}
	}
	if len(sms) == 0 || len(sms) > wappush.MaxSegments {
		return bad(fmt.Sprintf("%d segments", len(sms)), ErrMalformedPackage0)
	}
	r := wappush.NewReassembler(wappush.Limits{MaxPending: 1}, nil)
	var wsp []byte
	for i, ud := range sms {
		h, _, err := wappush.ParseUDH(ud)
		if err != nil {
			return bad(fmt.Sprintf("segment %d: %v", i+1, err), ErrMalformedPackage0)
		}
		if !h.HasPorts || h.DstPort != wappush.PortWAPPush {
			return bad(fmt.Sprintf("segment %d: WDP destination port %d", i+1, h.DstPort), ErrNotNotification)
		}
		payload, complete, err := r.Add("smsc", ud)
		if err != nil {
			return bad(fmt.Sprintf("segment %d: %v", i+1, err), ErrMalformedPackage0)
		}
		if complete {
			if i != len(sms)-1 {
				return bad("segments after a complete message", ErrMalformedPackage0)
			}
			wsp = payload
		}
	}
	if wsp == nil {
		return bad("concatenated message incomplete", ErrMalformedPackage0)
	}
	return d.ReceiveWAPPushInfo(wsp)
}

// ReceiveWAPPush takes a WSP push PDU and returns the SessionID of the accepted
// notification; see ReceiveWAPPushInfo.
func (d *Device) ReceiveWAPPush(wsp []byte) (string, error) {
	p, err := d.ReceiveWAPPushInfo(wsp)
	if err != nil {
		return "", err
	}
	return p.SessionID, nil
}

// ReceiveWAPPushInfo checks that a WSP push PDU is a DM notification and verifies the
// Package 0 it carries (VerifyPackage0).
func (d *Device) ReceiveWAPPushInfo(wsp []byte) (Package0, error) {
	push, err := wappush.ParsePushPDU(wsp)
	if err != nil {
		return Package0{}, &Package0Error{Reason: err.Error(), Err: ErrMalformedPackage0}
	}
	if !push.IsDMNotification() {
		return Package0{}, &Package0Error{Reason: "push is not for the DM client", Err: ErrNotNotification}
	}
	return d.VerifyPackage0(push.Body)
}

// VerifyPackage0 checks a Package 0 as a DM client does (OMA-TS-DM_Notification §6.2,
// PROTOCOL.md §9.1, §7.4):
//
//   - the trigger decodes and its version is supported;
//   - its server identifier is this device's DMAcc ServerID;
//   - the digest H(B64(H(name:secret)):nonce:B64(H(trigger))) matches the server
//     credentials in ./DMAcc/<x>/AppAuth/Server (AAuthName, AAuthSecret) and the nonce the
//     device last issued to the server (AAuthData);
//   - failing that, the digest may match the resync nonce (four zero bytes): the package is
//     accepted and both nonces become the resync nonce, so the session's credentials are
//     built on it and the server's challenges set fresh ones.
//
// Anything else is rejected with a *Package0Error. The device's tree changes only on resync.
func (d *Device) VerifyPackage0(b []byte) (Package0, error) {
	bad := func(reason string, err error) (Package0, error) {
		return Package0{}, &Package0Error{Reason: reason, Err: err}
	}
	p, err := pkg0.Parse(b)
	if err != nil {
		return bad(err.Error(), ErrMalformedPackage0)
	}
	t := p.Trigger
	if !acceptedVersions[t.Version] {
		return bad(fmt.Sprintf("version %d", t.Version), ErrUnsupportedVersion)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	cred := d.loadCredentials()
	if t.ServerID != d.cfg.ServerID {
		return bad(fmt.Sprintf("server id %q, the device knows %q", t.ServerID, d.cfg.ServerID), ErrUnknownServer)
	}
	if cred.srvSecret == "" {
		return bad("the device has no server credentials to check the digest with", ErrDigest)
	}
	// The key's name is the SRVCRED AAuthName; the session tier keeps it equal to the
	// ServerID (PROTOCOL.md §9.1, §12.17).
	name := cred.srvName
	if name == "" {
		name = t.ServerID
	}
	ok, resync := p.VerifyWithResync(dmauth.Key(name, cred.srvSecret), cred.srvNonce)
	if !ok {
		return bad("digest does not match the server credentials and nonce", ErrDigest)
	}
	if resync {
		d.setServerNonce(dmauth.ResyncNonce())
		d.setClientNonce(dmauth.ResyncNonce())
	}
	return Package0{SessionID: pkg0.SessionIDHex(t.SessionID), Trigger: t, Resync: resync}, nil
}
