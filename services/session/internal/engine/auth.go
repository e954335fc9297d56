package engine

import (
	"crypto/subtle"
	"strings"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

func (a AuthType) metaType() string {
	switch a {
	case AuthBasic:
		return string(dmauth.TypeBasic)
	case AuthHMAC:
		return string(dmauth.TypeMAC)
	}
	return string(dmauth.TypeMD5)
}

// credTypeOK checks the Cred's declared type against the account; a Cred without Meta Type
// is read as the account's type (lenient; clients omit the default).
func credTypeOK(c *syncml.Cred, want AuthType) bool {
	if c.Meta == nil || c.Meta.Type == "" {
		return true
	}
	t, err := dmauth.ParseType(c.Meta.Type)
	return err == nil && t == dmauth.Type(want.metaType())
}

func sameName(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// authenticate checks the client's credentials (OMA-TS-DM_Security §5.1.3, PROTOCOL.md §7.3).
// On success it adds the SyncHdr Status (212, with a Chal whose NextNonce is for the next
// session) and returns true. On failure it builds the whole refusal: 407 (no credentials) or
// 401 (refused) with a Chal carrying a fresh nonce, a Status per command, Final.
func (p *proc) authenticate() bool {
	s, a, m := p.sess, p.acct, p.m
	if s.Authenticated {
		p.r.hdrStatus(m, 200, nil)
		return true
	}
	var present, ok bool
	cred := m.Header.Cred
	switch a.ClientAuth {
	case AuthNone, "":
		present, ok = true, true
	case AuthBasic:
		present = cred != nil
		ok = present && credTypeOK(cred, AuthBasic) && dmauth.VerifyBasic(cred.Data, a.ClientName, a.ClientKey)
	case AuthMD5:
		present = cred != nil
		// Clients must hash the base64-decoded nonce; some (AOSP) hash its base64 text
		// instead, which is accepted as well (PROTOCOL.md §12.8). Either way the nonce is
		// rotated on success, so no credential works twice.
		ok = present && credTypeOK(cred, AuthMD5) && sameName(m.Header.Source.LocName, a.ClientName)
		if ok {
			ok, _ = dmauth.VerifyMD5Lenient(cred.Data, a.ClientKey, dmauth.EncodeNonce(a.ClientNonce))
		}
	case AuthHMAC:
		present = p.in.HMACHeader != ""
		if present {
			h, err := dmauth.ParseHMACHeader(p.in.HMACHeader)
			ok = err == nil && sameName(h.Username, a.ClientName) &&
				dmauth.VerifyHMACBodyHash(h, a.ClientKey, a.ClientNonce, p.in.BodyHash)
		}
	}
	if ok {
		s.Authenticated = true
		var chal *syncml.Chal
		code := 212
		if a.ClientAuth == AuthNone || a.ClientAuth == "" {
			code = 200
		}
		if a.ClientAuth == AuthMD5 || a.ClientAuth == AuthHMAC {
			// Nonce rotation: the next session must use a new nonce, so a recorded Pkg1
			// cannot be replayed (§5.1.3.3).
			n := p.e.nonce()
			p.out.NewClientNonce = n
			chal = &syncml.Chal{Meta: &syncml.Meta{Type: a.ClientAuth.metaType(), Format: "b64", NextNonce: dmauth.EncodeNonce(n)}}
		}
		p.r.hdrStatus(m, code, chal)
		return true
	}
	code := 401
	if !present {
		code = 407
	}
	chal := &syncml.Chal{Meta: &syncml.Meta{Type: a.ClientAuth.metaType(), Format: "b64"}}
	if a.ClientAuth != AuthBasic {
		n := p.e.nonce()
		p.out.NewClientNonce = n
		chal.Meta.NextNonce = dmauth.EncodeNonce(n)
	}
	p.r.hdrStatus(m, code, chal)
	for i := range m.Body.Commands {
		c := &m.Body.Commands[i]
		if c.Kind != syncml.KindStatus && c.Kind != syncml.KindResults {
			p.r.status(m, c, code)
		}
	}
	p.r.msg.Body.Final = true
	return false
}

// serverCred adds our credentials to the reply header while the client has not accepted
// them (mutual authentication, PROTOCOL.md §7.3).
func (p *proc) serverCred() {
	a := p.acct
	if p.sess.ServerAuthed || a.ServerAuth == AuthNone || a.ServerAuth == "" {
		return
	}
	h := &p.r.msg.Header
	h.Source.LocName = a.ServerName
	switch a.ServerAuth {
	case AuthMD5:
		h.Cred = &syncml.Cred{Meta: &syncml.Meta{Type: string(dmauth.TypeMD5), Format: "b64"}, Data: dmauth.MD5Cred(a.ServerKey, a.ServerNonce)}
	case AuthBasic:
		if a.ServerBasicCred != "" {
			h.Cred = &syncml.Cred{Meta: &syncml.Meta{Type: string(dmauth.TypeBasic), Format: "b64"}, Data: a.ServerBasicCred}
		}
	}
}

// serverHdrStatus handles the client's Status for our SyncHdr: 212/200 accept our
// credentials; 401/407 refuse them and may carry a Chal with the nonce to use; a Chal with
// 212 carries the nonce for the next session (§7.3).
func (p *proc) serverHdrStatus(c *syncml.Command) {
	if c.Chal != nil && c.Chal.Meta != nil && c.Chal.Meta.NextNonce != "" {
		if n, err := dmauth.DecodeNonce(strings.TrimSpace(c.Chal.Meta.NextNonce)); err == nil {
			p.out.NewServerNonce = n
			p.acct.ServerNonce = n
		}
	}
	switch c.Data {
	case "212", "200":
		p.sess.ServerAuthed = true
	case "401", "407":
		p.sess.ServerTries++
	}
}
