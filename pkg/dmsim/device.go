package dmsim

import (
	"hash/fnv"
	"slices"
	"strconv"
	"sync"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/dmtree"
	"github.com/dmgrid/dmgrid/pkg/pkg0"
)

// Well-known URIs of the standard objects (OMA-TS-DM_StdObj §7.1.3, FUMO §10.1).
const (
	URIDevInfo   = "./DevInfo"
	URIDevDetail = "./DevDetail"
	URIDMAcc     = "./DMAcc"
	URIFUMO      = "./FUMO/FwPkg1"
)

// FUMO alert types (OMA-TS-DM-FUMO §10.2.2, PROTOCOL.md §11.4).
const (
	FUMOTypeDownload          = "org.openmobilealliance.dm.firmwareupdate.download"
	FUMOTypeUpdate            = "org.openmobilealliance.dm.firmwareupdate.update"
	FUMOTypeDownloadAndUpdate = "org.openmobilealliance.dm.firmwareupdate.downloadandupdate"
)

// GenericAlert is one Item of a Generic Alert 1226 (OMA-TS-DM_Protocol §2.3.7).
type GenericAlert struct {
	Correlator string // echoes the Exec's Correlator, if it had one
	Source     string // the MO the alert is about, e.g. "./FUMO/FwPkg1"
	Type       string // alert type, e.g. FUMOTypeDownload
	Format     string // Meta Format of Data, e.g. "int"
	Mark       string // "" (informational) or fatal/critical/minor/warning/...
	Data       string
}

// Device is one simulated DM client: its configuration, management tree and the state that
// survives between sessions (nonces, pending Generic Alerts). Sessions of one device run one
// at a time; different devices are independent.
type Device struct {
	cfg  Config
	tree *Tree

	mu        sync.Mutex // serialises sessions
	stateMu   sync.Mutex // guards the fields below
	pending   []GenericAlert
	sessionNo uint16
}

// NewDevice builds a device with the standard tree: DevInfo, DevDetail, DMAcc/<Account> and
// FUMO/FwPkg1.
func NewDevice(cfg Config) *Device {
	cfg = cfg.withDefaults()
	d := &Device{cfg: cfg, tree: NewTree(dmtree.DefaultLimits)}
	h := fnv.New32a()
	h.Write([]byte(cfg.DevID))
	d.sessionNo = uint16(h.Sum32())
	d.buildTree()
	return d
}

// Config returns the device's configuration with defaults applied.
func (d *Device) Config() Config { return d.cfg }

// DevID returns ./DevInfo/DevId.
func (d *Device) DevID() string { return d.cfg.DevID }

// Tree returns the device's management tree.
func (d *Device) Tree() *Tree { return d.tree }

// QueueGenericAlert adds a Generic Alert for the next session's Pkg1.
func (d *Device) QueueGenericAlert(a GenericAlert) {
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	d.pending = append(d.pending, a)
}

// PendingAlerts returns the Generic Alerts not yet acknowledged by the server.
func (d *Device) PendingAlerts() []GenericAlert {
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	return slices.Clone(d.pending)
}

func (d *Device) dropAlerts(sent []GenericAlert) {
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	for _, a := range sent {
		if i := slices.Index(d.pending, a); i >= 0 {
			d.pending = slices.Delete(d.pending, i, i+1)
		}
	}
}

// nextSessionID picks the SessionID of a client-initiated session: upper-case hex without
// leading zeros (PROTOCOL.md §2.1), never 0.
func (d *Device) nextSessionID() string {
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	d.sessionNo++
	if d.sessionNo == 0 {
		d.sessionNo = 1
	}
	return pkg0.SessionIDHex(d.sessionNo)
}

// Paths of the DMAcc AppAuth leaves (OMA-TS-DM_StdObj §7.1.3.1).
func (d *Device) clientAuthURI(leaf string) string {
	return URIDMAcc + "/" + d.cfg.Account + "/AppAuth/Client/" + leaf
}

func (d *Device) serverAuthURI(leaf string) string {
	return URIDMAcc + "/" + d.cfg.Account + "/AppAuth/Server/" + leaf
}

// AAuthType values for the DMAcc tree (PROTOCOL.md §7.1).
func aauthType(t dmauth.Type) string {
	switch t {
	case dmauth.TypeBasic:
		return "BASIC"
	case dmauth.TypeMD5:
		return "DIGEST"
	case dmauth.TypeMAC:
		return "HMAC"
	}
	return ""
}

func parseAAuthType(s string) dmauth.Type {
	switch s {
	case "BASIC":
		return dmauth.TypeBasic
	case "DIGEST":
		return dmauth.TypeMD5
	case "HMAC":
		return dmauth.TypeMAC
	}
	return ""
}

// ClientNonce returns the nonce the device will use for its next credentials.
func (d *Device) ClientNonce() []byte {
	v, _ := d.tree.Get(d.clientAuthURI("AAuthData"))
	return v
}

// ServerNonce returns the nonce the device expects in the server's next credentials.
func (d *Device) ServerNonce() []byte {
	v, _ := d.tree.Get(d.serverAuthURI("AAuthData"))
	return v
}

func (d *Device) setClientNonce(n []byte) { _ = d.tree.Set(d.clientAuthURI("AAuthData"), n) }
func (d *Device) setServerNonce(n []byte) { _ = d.tree.Set(d.serverAuthURI("AAuthData"), n) }

// credentials read from the DMAcc tree at session start.
type credentials struct {
	typ          dmauth.Type
	name, secret string
	nonce        []byte
	// server side
	srvName, srvSecret string
	srvNonce           []byte
}

func (d *Device) loadCredentials() credentials {
	get := func(uri string) string {
		v, _ := d.tree.Get(uri)
		return string(v)
	}
	return credentials{
		typ:       parseAAuthType(get(d.clientAuthURI("AAuthType"))),
		name:      get(d.clientAuthURI("AAuthName")),
		secret:    get(d.clientAuthURI("AAuthSecret")),
		nonce:     d.ClientNonce(),
		srvName:   get(d.serverAuthURI("AAuthName")),
		srvSecret: get(d.serverAuthURI("AAuthSecret")),
		srvNonce:  d.ServerNonce(),
	}
}

// buildTree creates the standard management objects.
func (d *Device) buildTree() {
	c := d.cfg
	t := d.tree
	type n = NodeSpec
	node := func(typ, acl string, perm bool) NodeSpec {
		return NodeSpec{Format: dmtree.FormatNode, Type: typ, ACL: acl, Permanent: perm}
	}
	leaf := func(v string) NodeSpec { return NodeSpec{Value: []byte(v), Permanent: true} }
	boolStr := strconv.FormatBool(c.LrgObj)
	lim := dmtree.DefaultLimits
	add := func(uri string, s NodeSpec) {
		if err := t.AddNode(uri, s); err != nil {
			panic("dmsim: build standard tree: " + err.Error()) // static content: a bug if it fails
		}
	}

	// DevInfo and DevDetail are read-only for servers (StdObj §7.1.3.2–7.1.3.3).
	add(URIDevInfo, node("urn:oma:mo:oma-dm-devinfo:1.0", "Get=*", true))
	for _, kv := range [][2]string{{"DevId", c.DevID}, {"Man", c.Man}, {"Mod", c.Mod}, {"DmV", c.DmV}, {"Lang", c.Lang}} {
		add(URIDevInfo+"/"+kv[0], leaf(kv[1]))
	}
	add(URIDevDetail, node("urn:oma:mo:oma-dm-devdetail:1.0", "Get=*", true))
	add(URIDevDetail+"/URI", node("", "", true))
	add(URIDevDetail+"/URI/MaxDepth", n{Format: dmtree.FormatInt, Value: []byte(strconv.Itoa(lim.MaxDepth)), Permanent: true})
	add(URIDevDetail+"/URI/MaxTotLen", n{Format: dmtree.FormatInt, Value: []byte(strconv.Itoa(lim.MaxTotLen)), Permanent: true})
	add(URIDevDetail+"/URI/MaxSegLen", n{Format: dmtree.FormatInt, Value: []byte(strconv.Itoa(lim.MaxSegLen)), Permanent: true})
	for _, kv := range [][2]string{{"DevTyp", c.DevTyp}, {"OEM", c.OEM}, {"FwV", c.FwV}, {"SwV", c.SwV}, {"HwV", c.HwV}} {
		add(URIDevDetail+"/"+kv[0], leaf(kv[1]))
	}
	add(URIDevDetail+"/LrgObj", n{Format: dmtree.FormatBool, Value: []byte(boolStr), Permanent: true})

	// DMAcc (StdObj §7.1.3.1). Secrets and nonces are write-only (PROTOCOL.md §11.3).
	acc := URIDMAcc + "/" + c.Account
	add(URIDMAcc, node("", "Add=*&Get=*", true))
	add(acc, NodeSpec{Format: dmtree.FormatNode, Type: "urn:oma:mo:oma-dm-dmacc:1.0", ACL: "Add=*&Delete=*&Get=*&Replace=*"})
	dyn := func(v string) NodeSpec { return NodeSpec{Value: []byte(v)} }
	add(acc+"/AppID", dyn("w7"))
	add(acc+"/ServerID", dyn(c.ServerID))
	add(acc+"/Name", dyn(c.ServerID))
	add(acc+"/AppAddr/1/Addr", dyn(c.ServerURL))
	add(acc+"/AppAddr/1/AddrType", dyn("URI"))
	add(acc+"/AAuthPref", dyn(aauthType(c.AuthType)))
	for _, side := range []struct {
		name, level, user, secret string
		nonce                     []byte
		typ                       dmauth.Type
	}{
		{"Client", "CLCRED", c.ClientName, c.ClientSecret, c.ClientNonce, c.AuthType},
		{"Server", "SRVCRED", c.ServerName, c.ServerSecret, c.ServerNonce, dmauth.TypeMD5},
	} {
		p := acc + "/AppAuth/" + side.name + "/"
		add(p+"AAuthLevel", dyn(side.level))
		add(p+"AAuthType", dyn(aauthType(side.typ)))
		add(p+"AAuthName", dyn(side.user))
		add(p+"AAuthSecret", NodeSpec{Value: []byte(side.secret), ACL: "Replace=*"})
		add(p+"AAuthData", NodeSpec{Format: dmtree.FormatBin, Value: side.nonce, ACL: "Replace=*"})
	}

	// FUMO (OMA-TS-DM-FUMO §10.1), placed at ./FUMO/FwPkg1.
	add("./FUMO", node("", "Add=*&Delete=*&Exec=*&Get=*&Replace=*", true))
	add(URIFUMO, node("urn:oma:mo:oma-fumo:1.0", "", true))
	add(URIFUMO+"/PkgName", leaf(""))
	add(URIFUMO+"/PkgVersion", leaf(""))
	for _, op := range []struct {
		name, child string
		kind        execKind
		f           dmtree.Format
	}{
		{"Download", "PkgURL", execFUMODownload, dmtree.FormatChr},
		{"Update", "PkgData", execFUMOUpdate, dmtree.FormatBin},
		{"DownloadAndUpdate", "PkgURL", execFUMODownloadAndUpdate, dmtree.FormatChr},
	} {
		add(URIFUMO+"/"+op.name, node("", "", true))
		t.markExec(URIFUMO+"/"+op.name, op.kind)
		typ := ""
		if op.f == dmtree.FormatBin {
			typ = "application/octet-stream"
		}
		add(URIFUMO+"/"+op.name+"/"+op.child, NodeSpec{Format: op.f, Type: typ, Permanent: true})
	}
	add(URIFUMO+"/State", n{Format: dmtree.FormatInt, Value: []byte("10"), Permanent: true})
	add(URIFUMO+"/Ext", node("", "", true))
}

func (t *Tree) markExec(uri string, k execKind) {
	u := dmtree.MustParseURI(uri)
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.lookup(u); n != nil {
		n.exec = k
	}
}

// luhn returns the Luhn check digit for the decimal string s (IMEI check digit).
func luhn(s string) byte {
	sum := 0
	double := true // the digit left of the check digit is doubled
	for i := len(s) - 1; i >= 0; i-- {
		v := int(s[i] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return byte('0' + (10-sum%10)%10)
}

// ValidIMEI reports whether s (with or without the "IMEI:" prefix) is 15 digits with a valid
// Luhn check digit.
func ValidIMEI(s string) bool {
	if len(s) > 5 && s[:5] == "IMEI:" {
		s = s[5:]
	}
	if len(s) != 15 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return luhn(s[:14]) == s[14]
}
