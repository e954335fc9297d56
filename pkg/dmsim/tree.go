package dmsim

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dmgrid/dmgrid/pkg/dmtree"
)

// SyncML status codes the simulated device answers with (OMA-TS-DM_RepPro §4.1.5,
// PROTOCOL.md §5).
const (
	StatusOK                 = 200
	StatusAccepted           = 202
	StatusAuthAccepted       = 212
	StatusChunkAccepted      = 213
	StatusCancelled          = 214
	StatusNotExecuted        = 215
	StatusRolledBack         = 216
	StatusNotModified        = 304
	StatusBadRequest         = 400
	StatusInvalidCredentials = 401
	StatusForbidden          = 403
	StatusNotFound           = 404
	StatusNotAllowed         = 405
	StatusOptionalFeature    = 406
	StatusMissingCredentials = 407
	StatusIncompleteCommand  = 412
	StatusTooLarge           = 413
	StatusUnsupportedFormat  = 415
	StatusAlreadyExists      = 418
	StatusSizeMismatch       = 424
	StatusPermissionDenied   = 425
	StatusCommandFailed      = 500
	StatusNotImplemented     = 501
	StatusAtomicFailed       = 507
)

// StatusError is a tree operation refused with a SyncML status code.
type StatusError struct {
	Code int
	Msg  string
}

func (e *StatusError) Error() string { return fmt.Sprintf("dmsim: %s (status %d)", e.Msg, e.Code) }

func statusErr(code int, format string, args ...any) error {
	return &StatusError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// StatusOf returns the SyncML status carried by err: 200 for nil, the code of a
// *StatusError or *dmtree.Error, 500 otherwise.
func StatusOf(err error) int {
	if err == nil {
		return StatusOK
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return dmtree.StatusOf(err)
}

// execKind says what an Exec on a node does.
type execKind uint8

const (
	execNone execKind = iota
	execGeneric
	execFUMODownload
	execFUMOUpdate
	execFUMODownloadAndUpdate
)

// node is one management-tree node (OMA-TS-DM_TND §8.2). Interior nodes have Format node;
// every other format is a leaf.
type node struct {
	name      string
	format    dmtree.Format
	typ       string
	value     []byte
	acl       dmtree.ACL
	permanent bool
	exec      execKind
	title     string
	tstamp    time.Time
	verNo     uint16
	children  []*node // in creation order, which is the order Get lists them
}

func (n *node) interior() bool { return n.format == dmtree.FormatNode }

func (n *node) child(name string) *node {
	for _, c := range n.children {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (n *node) removeChild(name string) {
	n.children = slices.DeleteFunc(n.children, func(c *node) bool { return c.name == name })
}

func (n *node) clone() *node {
	c := *n
	c.value = slices.Clone(n.value)
	c.children = make([]*node, len(n.children))
	for i, ch := range n.children {
		c.children[i] = ch.clone()
	}
	return &c
}

// touch records a change: TStamp and VerNo properties (OMA-TS-DM_TND §8.3.7.6–8.3.7.8;
// VerNo wraps from 0xFFFF to 0).
func (n *node) touch(now time.Time) {
	n.tstamp = now
	n.verNo++
}

// NodeSpec describes a node created with Tree.AddNode.
type NodeSpec struct {
	Format    dmtree.Format // FormatNode makes an interior node
	Type      string        // MIME type (leaf) or MO identifier (interior)
	Value     []byte        // leaf value, as raw bytes
	ACL       string        // ACL property value, "" to inherit (OMA-TS-DM_TND §8.3.7.1)
	Permanent bool          // permanent nodes cannot be deleted (405)
	Exec      bool          // the node accepts Exec (answered 200)
}

// NodeInfo is a copy of one node's properties.
type NodeInfo struct {
	URI        string
	Name       string
	Format     dmtree.Format
	Type       string
	Value      []byte
	ACL        dmtree.ACL
	Title      string
	TStamp     time.Time
	VerNo      uint16
	Interior   bool
	Permanent  bool
	Executable bool
	Children   []string
}

// Tree is the simulated device's in-memory management tree (OMA-TS-DM_TND §8, PROTOCOL.md
// §10). URIs are parsed with dmtree, so "./A/B", "A/B" and "./A/B/" address the same node.
// A Tree is safe for concurrent use; a running session holds its lock per message.
type Tree struct {
	mu     sync.Mutex
	root   *node
	limits dmtree.Limits
	now    func() time.Time
}

// NewTree returns a tree holding only the root ".", whose ACL is the default Add=*&Get=*
// (OMA-TS-DM_TND §8.3.7.1). limits are the URI limits published in ./DevDetail/URI.
func NewTree(limits dmtree.Limits) *Tree {
	return &Tree{
		root:   &node{format: dmtree.FormatNode, acl: dmtree.DefaultRootACL(), permanent: true},
		limits: limits,
		now:    func() time.Time { return time.Now().UTC() },
	}
}

func (t *Tree) parse(uri string) (dmtree.URI, error) {
	u, err := dmtree.ParseURI(uri, t.limits)
	if err != nil {
		return dmtree.URI{}, fmt.Errorf("parse %q: %w", uri, err)
	}
	return u, nil
}

// lookup finds the node at u (query ignored); the caller holds t.mu.
func (t *Tree) lookup(u dmtree.URI) *node {
	n := t.root
	for _, s := range u.Segments() {
		if n = n.child(s); n == nil {
			return nil
		}
	}
	return n
}

// effectiveACL is the ACL governing u: its own or the nearest ancestor's (TND §8.3.7.1).
func (t *Tree) effectiveACL(u dmtree.URI) dmtree.ACL {
	return dmtree.Effective(u, func(v dmtree.URI) (dmtree.ACL, bool) {
		n := t.lookup(v)
		if n == nil {
			return dmtree.ACL{}, false
		}
		return n.acl, true
	})
}

// create adds a node at u, creating missing interior ancestors as dynamic nodes
// (OMA-TS-DM_RepPro §4.1.6.1 allows implicit parents). The caller holds t.mu.
func (t *Tree) create(u dmtree.URI, spec NodeSpec) (*node, error) {
	if u.IsRoot() {
		return nil, statusErr(StatusAlreadyExists, "the root always exists")
	}
	segs := u.Segments()
	parent := t.root
	for _, s := range segs[:len(segs)-1] {
		c := parent.child(s)
		if c == nil {
			c = &node{name: s, format: dmtree.FormatNode, tstamp: t.now()}
			parent.children = append(parent.children, c)
		} else if !c.interior() {
			return nil, statusErr(StatusNotAllowed, "%s: %q is a leaf and cannot have children", u, s)
		}
		parent = c
	}
	name := segs[len(segs)-1]
	if parent.child(name) != nil {
		return nil, statusErr(StatusAlreadyExists, "%s already exists", u)
	}
	var acl dmtree.ACL
	if spec.ACL != "" {
		a, err := dmtree.ParseACL(spec.ACL)
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", u, err)
		}
		acl = a
	}
	n := &node{
		name:      name,
		format:    spec.Format,
		typ:       spec.Type,
		acl:       acl,
		permanent: spec.Permanent,
		tstamp:    t.now(),
	}
	if spec.Exec {
		n.exec = execGeneric
	}
	if !n.interior() {
		n.value = slices.Clone(spec.Value)
	}
	parent.children = append(parent.children, n)
	return n, nil
}

// AddNode creates a node; missing parents are created as dynamic interior nodes. It fails
// with 418 if the node exists.
func (t *Tree) AddNode(uri string, spec NodeSpec) error {
	u, err := t.parse(uri)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err = t.create(u, spec)
	return err
}

// Get returns a leaf's value (a copy), or for an interior node its child names joined with
// "/" as a Get would return them (OMA-TS-DM_TND §8.2).
func (t *Tree) Get(uri string) ([]byte, bool) {
	u, err := t.parse(uri)
	if err != nil {
		return nil, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.lookup(u)
	if n == nil {
		return nil, false
	}
	if n.interior() {
		return []byte(childList(n)), true
	}
	return slices.Clone(n.value), true
}

// Set stores value in the leaf at uri, creating it as a dynamic chr leaf (with missing
// parents) if it does not exist. Setting an interior node fails with 405.
func (t *Tree) Set(uri string, value []byte) error {
	u, err := t.parse(uri)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.lookup(u)
	if n == nil {
		_, err := t.create(u, NodeSpec{Value: value})
		return err
	}
	if n.interior() {
		return statusErr(StatusNotAllowed, "%s is an interior node", u)
	}
	n.value = slices.Clone(value)
	n.touch(t.now())
	return nil
}

// SetACL replaces a node's ACL property value ("" removes it, so it inherits).
func (t *Tree) SetACL(uri, acl string) error {
	u, err := t.parse(uri)
	if err != nil {
		return err
	}
	a, err := dmtree.ParseACL(acl)
	if err != nil {
		return fmt.Errorf("set ACL of %s: %w", uri, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.lookup(u)
	if n == nil {
		return statusErr(StatusNotFound, "%s not found", u)
	}
	n.acl = a
	return nil
}

// Delete removes a node and its subtree. Permanent nodes and the root give 405, unknown
// nodes 404 (OMA-TS-DM_RepPro §4.1.6.5).
func (t *Tree) Delete(uri string) error {
	u, err := t.parse(uri)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.remove(u)
}

func (t *Tree) remove(u dmtree.URI) error {
	if u.IsRoot() {
		return statusErr(StatusNotAllowed, "the root cannot be deleted")
	}
	n := t.lookup(u)
	if n == nil {
		return statusErr(StatusNotFound, "%s not found", u)
	}
	if hasPermanent(n) {
		return statusErr(StatusNotAllowed, "%s is or contains a permanent node", u)
	}
	t.lookup(u.Parent()).removeChild(n.name)
	return nil
}

func hasPermanent(n *node) bool {
	if n.permanent {
		return true
	}
	for _, c := range n.children {
		if hasPermanent(c) {
			return true
		}
	}
	return false
}

// Node returns a copy of the properties of the node at uri.
func (t *Tree) Node(uri string) (NodeInfo, bool) {
	u, err := t.parse(uri)
	if err != nil {
		return NodeInfo{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.lookup(u)
	if n == nil {
		return NodeInfo{}, false
	}
	return info(u, n), true
}

func info(u dmtree.URI, n *node) NodeInfo {
	ni := NodeInfo{
		URI:        u.Path().String(),
		Name:       n.name,
		Format:     n.format,
		Type:       n.typ,
		Value:      slices.Clone(n.value),
		ACL:        n.acl,
		Title:      n.title,
		TStamp:     n.tstamp,
		VerNo:      n.verNo,
		Interior:   n.interior(),
		Permanent:  n.permanent,
		Executable: n.exec != execNone,
	}
	for _, c := range n.children {
		ni.Children = append(ni.Children, c.name)
	}
	return ni
}

// Walk calls fn for the node at uri and every node below it, parents before children,
// until fn returns false. It reports whether the start node exists.
func (t *Tree) Walk(uri string, fn func(NodeInfo) bool) bool {
	u, err := t.parse(uri)
	if err != nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.lookup(u)
	if n == nil {
		return false
	}
	walk(u.Path(), n, func(v dmtree.URI, m *node) bool { return fn(info(v, m)) })
	return true
}

// walk visits n at u and its subtree in pre-order; it returns false when visit stopped it.
func walk(u dmtree.URI, n *node, visit func(dmtree.URI, *node) bool) bool {
	if !visit(u, n) {
		return false
	}
	for _, c := range n.children {
		cu, err := u.Join(c.name)
		if err != nil {
			continue // names in the tree were validated when they were created
		}
		if !walk(cu, c, visit) {
			return false
		}
	}
	return true
}

// childList is the Data of a Get on an interior node: child names separated by "/"
// (OMA-TS-DM_TND §8.2, PROTOCOL.md §10).
func childList(n *node) string {
	b := make([]byte, 0, 16*len(n.children))
	for i, c := range n.children {
		if i > 0 {
			b = append(b, '/')
		}
		b = append(b, c.name...)
	}
	return string(b)
}

// snapshot and restore implement Atomic roll back (OMA-TS-DM_RepPro §4.1.6.3); the caller
// holds t.mu.
func (t *Tree) snapshot() *node  { return t.root.clone() }
func (t *Tree) restore(r *node)  { t.root = r }
func (t *Tree) lock()            { t.mu.Lock() }
func (t *Tree) unlock()          { t.mu.Unlock() }
func (t *Tree) stamp() time.Time { return t.now() }
