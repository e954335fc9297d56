// Package ingest turns dmgrid events into inventory updates and runs the durable
// JetStream consumer that applies them.
package ingest

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"
	inventoryv1 "github.com/dmgrid/dmgrid/proto/dmgrid/inventory/v1"

	"github.com/dmgrid/dmgrid/pkg/dmtree"
	"github.com/dmgrid/dmgrid/pkg/events"
	"github.com/dmgrid/dmgrid/services/inventory/internal/store"
)

// Limits on what an event may carry; beyond them it is malformed (the session service
// never produces such events: device ids are at most 256 characters, event ids are
// 32 hex digits).
const (
	maxDeviceID = 256
	maxEventID  = 128
)

// MalformedError is an event that can never be applied: it is dead-lettered, not retried.
type MalformedError struct{ Reason string }

func (e *MalformedError) Error() string { return "malformed event: " + e.Reason }

func malformed(format string, args ...any) error {
	return &MalformedError{Reason: fmt.Sprintf(format, args...)}
}

// Decode parses a message of the events stream and checks the envelope.
func Decode(subject string, data []byte) (*eventsv1.Event, error) {
	ev := &eventsv1.Event{}
	if err := proto.Unmarshal(data, ev); err != nil {
		return nil, malformed("not a dmgrid.events.v1.Event: %v", err)
	}
	switch id := ev.GetEventId(); {
	case id == "":
		return nil, malformed("no event_id")
	case len(id) > maxEventID:
		return nil, malformed("event_id longer than %d bytes", maxEventID)
	}
	switch id := ev.GetDeviceId(); {
	case id == "":
		return nil, malformed("no device_id")
	case len(id) > maxDeviceID || !utf8.ValidString(id):
		return nil, malformed("device_id is not 1 to %d bytes of UTF-8", maxDeviceID)
	}
	if ev.GetTime() == nil || ev.GetTime().CheckValid() != nil || ev.GetTime().AsTime().UnixMilli() <= 0 {
		// Without a time the per-device ordering rule cannot be applied.
		return nil, malformed("no valid time")
	}
	kind := events.Kind(ev)
	if kind == "unknown" {
		if len(ev.ProtoReflect().GetUnknown()) > 0 {
			// A payload this build does not know (a newer publisher): not for the
			// inventory, and not malformed. ToUpdate ignores it.
			return ev, nil
		}
		return nil, malformed("no payload")
	}
	if c, ok := ev.GetPayload().(*eventsv1.Event_CommandStateChanged); ok {
		switch cmd := c.CommandStateChanged.GetCommand(); {
		case cmd == nil:
			return nil, malformed("command_state_changed without a command")
		case cmd.GetDeviceId() != "" && cmd.GetDeviceId() != ev.GetDeviceId():
			return nil, malformed("command of device %q in an event of device %q", cmd.GetDeviceId(), ev.GetDeviceId())
		}
	}
	// The subject names the kind (pkg/events): a mismatch means a broken publisher.
	if want := events.SubjectRoot + "." + kind + "."; subject != "" && !strings.HasPrefix(subject, want) {
		return nil, malformed("subject %q does not match payload %s", subject, kind)
	}
	return ev, nil
}

// attrOf maps the DevInfo and DevDetail leaves the inventory keeps as device attributes.
var attrOf = map[string]string{
	"./DevInfo/DevId":    store.AttrDevID,
	"./DevInfo/Man":      string(store.FieldMan),
	"./DevInfo/Mod":      string(store.FieldMod),
	"./DevInfo/DmV":      string(store.FieldDmV),
	"./DevInfo/Lang":     string(store.FieldLang),
	"./DevDetail/DevTyp": string(store.FieldDevTyp),
	"./DevDetail/OEM":    string(store.FieldOEM),
	"./DevDetail/FwV":    string(store.FieldFwV),
	"./DevDetail/SwV":    string(store.FieldSwV),
	"./DevDetail/HwV":    string(store.FieldHwV),
	"./DevDetail/LrgObj": store.AttrLrgObj,
}

var outcomeCounter = map[eventsv1.SessionEnded_Outcome]string{
	eventsv1.SessionEnded_OUTCOME_COMPLETED:   store.CounterCompleted,
	eventsv1.SessionEnded_OUTCOME_ABORTED:     store.CounterAborted,
	eventsv1.SessionEnded_OUTCOME_AUTH_FAILED: store.CounterAuthFailed,
	eventsv1.SessionEnded_OUTCOME_TIMED_OUT:   store.CounterTimedOut,
	eventsv1.SessionEnded_OUTCOME_ERROR:       store.CounterError,
}

// builder collects an update, keeping one entry per attribute and node (the script reads
// each name once; the last value given wins, as it would in order).
type builder struct {
	u     store.Update
	attrs map[string]int
	nodes map[string]int
}

func (b *builder) attr(name, value string) {
	if i, ok := b.attrs[name]; ok {
		b.u.Attrs[i].Value = value
		return
	}
	if b.attrs == nil {
		b.attrs = map[string]int{}
	}
	b.attrs[name] = len(b.u.Attrs)
	b.u.Attrs = append(b.u.Attrs, store.Attr{Name: name, Value: value})
}

// node records a node value; a DevInfo/DevDetail leaf also updates its attribute.
func (b *builder) node(uri string, n *inventoryv1.TreeNode) {
	if a, ok := attrOf[uri]; ok && n.Data != nil {
		b.attr(a, string(n.Data))
	}
	if i, ok := b.nodes[uri]; ok {
		b.u.Nodes[i].Value = n
		return
	}
	if b.nodes == nil {
		b.nodes = map[string]int{}
	}
	b.nodes[uri] = len(b.u.Nodes)
	b.u.Nodes = append(b.u.Nodes, store.Node{URI: uri, Value: n})
}

// canonical returns a node URI in canonical form, or ok=false for a URI that is not a
// plain node address (bad syntax, or a ?prop=/?list= query whose "value" is not the
// node's value).
func canonical(raw string) (string, bool) {
	u, err := dmtree.ParseURI(raw, dmtree.DefaultLimits)
	if err != nil || u.Query().Kind != dmtree.QueryNone {
		return "", false
	}
	return u.String(), true
}

// ToUpdate maps a decoded event to the inventory update it implies; ok is false for an
// event that changes nothing in the inventory (it is acknowledged without a Redis call).
// skipped counts result items that were left out because their URI is not a node address.
func ToUpdate(ev *eventsv1.Event) (u store.Update, ok bool, skipped int) {
	b := builder{u: store.Update{EventID: ev.GetEventId(), DeviceID: ev.GetDeviceId(), Time: ev.GetTime().AsTime()}}
	ms := fmt.Sprint(b.u.Time.UnixMilli())
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_SessionStarted:
		b.u.Seen = true
		b.attr(store.AttrSessionID, p.SessionStarted.GetSessionId())
		b.attr(store.AttrSessionStart, ms)
		b.u.Counters = append(b.u.Counters, store.CounterStarted)
	case *eventsv1.Event_SessionEnded:
		o := p.SessionEnded.GetOutcome()
		// A session that timed out ended because the device went silent: it was not seen
		// at this time.
		b.u.Seen = o != eventsv1.SessionEnded_OUTCOME_TIMED_OUT
		b.attr(store.AttrSessionEnd, ms)
		if c, ok := outcomeCounter[o]; ok {
			b.attr(string(store.FieldOutcome), o.String())
			b.u.Counters = append(b.u.Counters, c)
		}
	case *eventsv1.Event_DeviceInfoReported:
		di := p.DeviceInfoReported
		b.u.Seen = true
		// Empty DevInfo fields mean "unchanged" (events.proto), so only set ones count.
		for uri, v := range map[string]string{"./DevInfo/DevId": di.GetDevId(), "./DevInfo/Man": di.GetMan(),
			"./DevInfo/Mod": di.GetMod(), "./DevInfo/DmV": di.GetDmV(), "./DevInfo/Lang": di.GetLang()} {
			if v != "" {
				b.node(uri, &inventoryv1.TreeNode{Data: []byte(v), Source: inventoryv1.TreeNode_SOURCE_DEVICE_INFO})
			}
		}
		for raw, v := range di.GetNodes() {
			uri, ok := canonical(raw)
			if !ok {
				skipped++
				continue
			}
			b.node(uri, &inventoryv1.TreeNode{Data: []byte(v), Source: inventoryv1.TreeNode_SOURCE_DEVICE_INFO})
		}
	case *eventsv1.Event_CommandStateChanged:
		c := p.CommandStateChanged.GetCommand()
		if c.GetStatusCode() == 0 {
			// Queued, sent, cancelled, expired, or given up by the server: the device said
			// nothing, so nothing about it changed.
			return b.u, false, 0
		}
		b.u.Seen = true
		if c.GetState() == commandv1.Command_STATE_COMPLETED && c.GetOperation().GetType() == commandv1.OperationType_OPERATION_TYPE_GET {
			skipped = b.results(c)
		}
	case *eventsv1.Event_DeviceChanged:
		// The whole label set (empty after deletion); ordered by the event time like
		// every other value.
		b.u.Labels = map[string]string{}
		for k, v := range p.DeviceChanged.GetLabels() {
			b.u.Labels[k] = v
		}
	case *eventsv1.Event_GenericAlertReceived:
		ga := p.GenericAlertReceived
		b.u.Seen = true
		if ga.GetSourceUri() != "" {
			if uri, ok := canonical(ga.GetSourceUri()); ok {
				b.node(uri, &inventoryv1.TreeNode{Format: ga.GetFormat(), Data: nonNil(ga.GetData()),
					Source: inventoryv1.TreeNode_SOURCE_GENERIC_ALERT, AlertType: ga.GetType(), AlertMark: ga.GetMark()})
			} else {
				skipped++
			}
		}
	default:
		return b.u, false, 0
	}
	// Map iteration above is random; sorting keeps the script's arguments (and so the
	// order of writes) reproducible.
	slices.SortFunc(b.u.Attrs, func(x, y store.Attr) int { return strings.Compare(x.Name, y.Name) })
	slices.SortFunc(b.u.Nodes, func(x, y store.Node) int { return strings.Compare(x.URI, y.URI) })
	return b.u, true, skipped
}

// results records the values of a completed Get's Results.
func (b *builder) results(c *commandv1.Command) (skipped int) {
	// A ?list=Struct Get returns the nodes without values (OMA-TS-DM_TND §8.4): their
	// missing Data says nothing about the values, unlike an item over the events' size
	// limit, whose value did change but was left out.
	structOnly := false
	if u, err := dmtree.ParseURI(c.GetOperation().GetTargetUri(), dmtree.DefaultLimits); err == nil {
		q := u.Query()
		structOnly = q.Kind == dmtree.QueryList && q.List == dmtree.ListStruct
	}
	for _, r := range c.GetResults() {
		uri, ok := canonical(r.GetUri())
		if !ok {
			skipped++
			continue
		}
		if r.Data == nil && structOnly {
			continue
		}
		b.node(uri, &inventoryv1.TreeNode{Format: r.GetFormat(), MimeType: r.GetMimeType(), Data: r.Data,
			Source: inventoryv1.TreeNode_SOURCE_RESULTS, CommandId: c.GetCommandId()})
	}
	return skipped
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
