// Package syncmlpb converts between the SyncML model (pkg/syncml) and its protobuf mirror
// (dmgrid.syncml.v1), which carries messages from the gateway to the session workers.
package syncmlpb

import (
	"fmt"
	"unicode/utf8"

	syncmlv1 "github.com/dmgrid/dmgrid/proto/dmgrid/syncml/v1"

	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// Command kinds share their numbers (syncml.KindAdd == COMMAND_KIND_ADD, ...); data kinds
// are one higher in protobuf, where 0 means unset (read as text). TestKindNumbers checks it.

// EncodingToProto maps an encoding.
func EncodingToProto(e syncml.Encoding) syncmlv1.Encoding {
	switch e {
	case syncml.EncodingXML:
		return syncmlv1.Encoding_ENCODING_XML
	case syncml.EncodingWBXML:
		return syncmlv1.Encoding_ENCODING_WBXML
	}
	return syncmlv1.Encoding_ENCODING_UNSPECIFIED
}

// EncodingFromProto maps an encoding back.
func EncodingFromProto(e syncmlv1.Encoding) syncml.Encoding {
	switch e {
	case syncmlv1.Encoding_ENCODING_XML:
		return syncml.EncodingXML
	case syncmlv1.Encoding_ENCODING_WBXML:
		return syncml.EncodingWBXML
	}
	return syncml.EncodingUnknown
}

// ToProto converts a message.
func ToProto(m *syncml.Message) *syncmlv1.Message {
	if m == nil {
		return nil
	}
	h := &m.Header
	return &syncmlv1.Message{
		Header: &syncmlv1.Header{
			VerDtd: h.VerDTD, VerProto: h.VerProto, SessionId: h.SessionID, MsgId: h.MsgID,
			Target: loc(&h.Target), Source: loc(&h.Source), RespUri: h.RespURI, NoResp: h.NoResp,
			Cred: cred(h.Cred), Meta: meta(h.Meta),
		},
		Body: &syncmlv1.Body{Commands: cmds(m.Body.Commands), Final: m.Body.Final},
	}
}

func loc(l *syncml.Locator) *syncmlv1.Locator {
	if l == nil {
		return nil
	}
	return &syncmlv1.Locator{LocUri: l.LocURI, LocName: l.LocName}
}

func cred(c *syncml.Cred) *syncmlv1.Cred {
	if c == nil {
		return nil
	}
	return &syncmlv1.Cred{Meta: meta(c.Meta), Data: c.Data}
}

func meta(m *syncml.Meta) *syncmlv1.Meta {
	if m == nil {
		return nil
	}
	return &syncmlv1.Meta{Format: m.Format, Type: m.Type, Mark: m.Mark, Size: m.Size, NextNonce: m.NextNonce,
		Version: m.Version, MaxMsgSize: m.MaxMsgSize, MaxObjSize: m.MaxObjSize, Emi: m.EMI}
}

func cmds(cs []syncml.Command) []*syncmlv1.Command {
	if len(cs) == 0 {
		return nil
	}
	out := make([]*syncmlv1.Command, len(cs))
	for i := range cs {
		c := &cs[i]
		pc := &syncmlv1.Command{
			Kind: syncmlv1.CommandKind(c.Kind), CmdId: c.CmdID, NoResp: c.NoResp, Cred: cred(c.Cred), Meta: meta(c.Meta),
			MsgRef: c.MsgRef, CmdRef: c.CmdRef, Cmd: c.Cmd, TargetRefs: c.TargetRefs, SourceRefs: c.SourceRefs,
			Data: c.Data, Correlator: c.Correlator, Lang: c.Lang, Commands: cmds(c.Commands),
		}
		if c.Chal != nil {
			pc.Chal = &syncmlv1.Chal{Meta: meta(c.Chal.Meta)}
		}
		if len(c.Items) > 0 {
			pc.Items = make([]*syncmlv1.Item, len(c.Items))
			for j := range c.Items {
				it := &c.Items[j]
				pi := &syncmlv1.Item{Target: loc(it.Target), Source: loc(it.Source), SourceParent: it.SourceParent,
					TargetParent: it.TargetParent, Meta: meta(it.Meta), MoreData: it.MoreData}
				if it.Data != nil {
					pi.Data = &syncmlv1.Data{Value: []byte(it.Data.Value), Kind: syncmlv1.DataKind(it.Data.Kind + 1)}
				}
				pc.Items[j] = pi
			}
		}
		out[i] = pc
	}
	return out
}

// FromProto converts a message back; it fails on command or data kinds it does not know.
func FromProto(pm *syncmlv1.Message) (*syncml.Message, error) {
	if pm == nil {
		return nil, fmt.Errorf("syncmlpb: nil message")
	}
	m := &syncml.Message{}
	if ph := pm.GetHeader(); ph != nil {
		m.Header = syncml.Header{
			VerDTD: ph.VerDtd, VerProto: ph.VerProto, SessionID: ph.SessionId, MsgID: ph.MsgId,
			RespURI: ph.RespUri, NoResp: ph.NoResp, Cred: credBack(ph.Cred), Meta: metaBack(ph.Meta),
		}
		if l := locBack(ph.Target); l != nil {
			m.Header.Target = *l
		}
		if l := locBack(ph.Source); l != nil {
			m.Header.Source = *l
		}
	}
	var err error
	m.Body.Commands, err = cmdsBack(pm.GetBody().GetCommands())
	m.Body.Final = pm.GetBody().GetFinal()
	return m, err
}

func locBack(l *syncmlv1.Locator) *syncml.Locator {
	if l == nil {
		return nil
	}
	return &syncml.Locator{LocURI: l.LocUri, LocName: l.LocName}
}

func credBack(c *syncmlv1.Cred) *syncml.Cred {
	if c == nil {
		return nil
	}
	return &syncml.Cred{Meta: metaBack(c.Meta), Data: c.Data}
}

func metaBack(m *syncmlv1.Meta) *syncml.Meta {
	if m == nil {
		return nil
	}
	return &syncml.Meta{Format: m.Format, Type: m.Type, Mark: m.Mark, Size: m.Size, NextNonce: m.NextNonce,
		Version: m.Version, MaxMsgSize: m.MaxMsgSize, MaxObjSize: m.MaxObjSize, EMI: m.Emi}
}

func cmdsBack(pcs []*syncmlv1.Command) ([]syncml.Command, error) {
	if len(pcs) == 0 {
		return nil, nil
	}
	out := make([]syncml.Command, len(pcs))
	for i, pc := range pcs {
		if pc.Kind <= 0 || pc.Kind > syncmlv1.CommandKind_COMMAND_KIND_STATUS {
			return nil, fmt.Errorf("syncmlpb: command %d has unknown kind %d", i, pc.Kind)
		}
		c := syncml.Command{
			Kind: syncml.Kind(pc.Kind), CmdID: pc.CmdId, NoResp: pc.NoResp, Cred: credBack(pc.Cred), Meta: metaBack(pc.Meta),
			MsgRef: pc.MsgRef, CmdRef: pc.CmdRef, Cmd: pc.Cmd, TargetRefs: pc.TargetRefs, SourceRefs: pc.SourceRefs,
			Data: pc.Data, Correlator: pc.Correlator, Lang: pc.Lang,
		}
		if pc.Chal != nil {
			c.Chal = &syncml.Chal{Meta: metaBack(pc.Chal.Meta)}
		}
		if len(pc.Items) > 0 {
			c.Items = make([]syncml.Item, len(pc.Items))
			for j, pi := range pc.Items {
				it := syncml.Item{Target: locBack(pi.Target), Source: locBack(pi.Source), SourceParent: pi.SourceParent,
					TargetParent: pi.TargetParent, Meta: metaBack(pi.Meta), MoreData: pi.MoreData}
				if pi.Data != nil {
					k := syncml.DataText
					switch pi.Data.Kind {
					case syncmlv1.DataKind_DATA_KIND_UNSPECIFIED, syncmlv1.DataKind_DATA_KIND_TEXT:
					case syncmlv1.DataKind_DATA_KIND_OPAQUE:
						k = syncml.DataOpaque
					case syncmlv1.DataKind_DATA_KIND_XML:
						k = syncml.DataXML
					default:
						return nil, fmt.Errorf("syncmlpb: item data has unknown kind %d", pi.Data.Kind)
					}
					it.Data = &syncml.Data{Value: string(pi.Data.Value), Kind: k}
				}
				c.Items[j] = it
			}
		}
		var err error
		if c.Commands, err = cmdsBack(pc.Commands); err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// CheckUTF8 reports the first string of m that is not valid UTF-8 (protobuf strings must
// be; WBXML text may carry any bytes). Item Data travels as bytes and is not checked. It
// runs for every device message, so it checks strings in place without building any.
func CheckUTF8(m *syncml.Message) (string, bool) {
	h := &m.Header
	if !valid(h.VerDTD, h.VerProto, h.SessionID, h.MsgID, h.Target.LocURI, h.Target.LocName,
		h.Source.LocURI, h.Source.LocName, h.RespURI) || !credOK(h.Cred) || !metaOK(h.Meta) {
		return "SyncHdr", false
	}
	return cmdsUTF8(m.Body.Commands, "SyncBody")
}

func valid(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

func credOK(c *syncml.Cred) bool { return c == nil || (utf8.ValidString(c.Data) && metaOK(c.Meta)) }

func metaOK(m *syncml.Meta) bool {
	return m == nil || valid(m.Format, m.Type, m.Mark, m.Size, m.NextNonce, m.Version, m.MaxMsgSize, m.MaxObjSize, m.EMI)
}

func locOK(l *syncml.Locator) bool { return l == nil || valid(l.LocURI, l.LocName) }

func cmdsUTF8(cs []syncml.Command, path string) (string, bool) {
	for i := range cs {
		c := &cs[i]
		ok := valid(c.CmdID, c.MsgRef, c.CmdRef, c.Cmd, c.Data, c.Correlator, c.Lang) &&
			valid(c.TargetRefs...) && valid(c.SourceRefs...) &&
			credOK(c.Cred) && metaOK(c.Meta) && (c.Chal == nil || metaOK(c.Chal.Meta))
		for j := 0; ok && j < len(c.Items); j++ {
			it := &c.Items[j]
			ok = locOK(it.Target) && locOK(it.Source) && valid(it.SourceParent, it.TargetParent) && metaOK(it.Meta)
		}
		if !ok {
			return path + "/" + c.Kind.String(), false
		}
		if bad, ok := cmdsUTF8(c.Commands, path+"/"+c.Kind.String()); !ok {
			return bad, false
		}
	}
	return "", true
}
