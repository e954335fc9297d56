package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dmgrid/dmgrid/internal/envflag"
	"github.com/dmgrid/dmgrid/internal/grpctls"
)

const (
	defaultAddr    = "127.0.0.1:9090"
	defaultTimeout = 10 * time.Second
	// maxRecvMsg lets responses carry the largest values the API accepts (4 MiB of data per
	// operation) with room to spare; gRPC's own default is 4 MiB.
	maxRecvMsg = 64 << 20
)

// globals are the flags every API command takes, before or after its arguments.
type globals struct {
	addr       string
	output     string
	timeout    time.Duration
	timeoutSet bool // --timeout was given (watch has no deadline otherwise)
	tls        grpctls.ClientConfig
}

// tlsVars name the TLS settings in dmctl's error messages.
var tlsVars = grpctls.ClientVars{CA: "--tls-ca (DMGRID_TLS_CA)", Cert: "--tls-cert (DMGRID_TLS_CERT)",
	Key: "--tls-key (DMGRID_TLS_KEY)", ServerName: "--tls-server-name (DMGRID_TLS_SERVER_NAME)"}

func defaultGlobals() globals {
	g := globals{addr: os.Getenv("DMGRID_ADDR"), output: "text", timeout: defaultTimeout,
		tls: grpctls.ReadClient(envflag.NewReader(os.LookupEnv), grpctls.ClientVars{CA: "DMGRID_TLS_CA", Cert: "DMGRID_TLS_CERT",
			Key: "DMGRID_TLS_KEY", ServerName: "DMGRID_TLS_SERVER_NAME"})}
	if g.addr == "" {
		g.addr = defaultAddr
	}
	return g
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.addr, "addr", g.addr, "gRPC address of the session tier (env DMGRID_ADDR)")
	fs.StringVar(&g.output, "o", g.output, "output: text or json")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "deadline of each call")
	fs.StringVar(&g.tls.CAFile, "tls-ca", g.tls.CAFile, "PEM CA bundle that verifies the server; turns TLS on (env DMGRID_TLS_CA)")
	fs.StringVar(&g.tls.CertFile, "tls-cert", g.tls.CertFile, "PEM client certificate, for servers that require one (env DMGRID_TLS_CERT)")
	fs.StringVar(&g.tls.KeyFile, "tls-key", g.tls.KeyFile, "its private key (env DMGRID_TLS_KEY)")
	fs.StringVar(&g.tls.ServerName, "tls-server-name", g.tls.ServerName, "name the server's certificate must hold, instead of the --addr host (env DMGRID_TLS_SERVER_NAME)")
}

// noteSet records which global flags fs saw.
func (g *globals) noteSet(fs *flag.FlagSet) {
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "timeout" {
			g.timeoutSet = true
		}
	})
}

func (g *globals) check() error {
	switch {
	case g.output != "text" && g.output != "json":
		return usageError{fmt.Sprintf("-o must be text or json, not %q", g.output)}
	case g.timeout <= 0:
		return usageError{"--timeout must be positive"}
	case g.addr == "":
		return usageError{"--addr must not be empty"}
	}
	return nil
}

// parseLeadingGlobals takes the global flags written before the command name
// ("dmctl -o json device list") and returns the rest of the arguments.
func parseLeadingGlobals(args []string) (globals, []string, bool, error) {
	g := defaultGlobals()
	fs := newFlagSet("dmctl")
	g.register(fs)
	if err := fs.Parse(args); err != nil {
		return g, nil, false, flagError(err)
	}
	g.noteSet(fs)
	return g, fs.Args(), fs.NFlag() > 0, nil
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// errHelp asks for the usage text on stdout and exit status 0.
var errHelp = errors.New("help requested")

func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return errHelp
	}
	return usageError{err.Error()}
}

// parseArgs parses fs's flags wherever they appear among the positional arguments, so that
// "device get IMEI:1 -o json" works, and returns the positional ones. "--" ends the flags:
// everything after it is positional, for values that begin with '-'.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, flagError(err)
		}
		rest := fs.Args()
		// Parse stops either at "--" (consumed) or at the first positional (not consumed).
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// client is one API invocation: its flags, connection and output.
type client struct {
	g      globals
	ctx    context.Context // cancelled on interrupt
	stdout io.Writer
	stderr io.Writer
	conn   *grpc.ClientConn
}

// apiCommand parses an API command's flags (the globals plus what addFlags registers),
// checks the number of positional arguments and connects. Call close when done.
func apiCommand(ctx context.Context, g globals, name string, args []string, stdout, stderr io.Writer,
	minArgs, maxArgs int, addFlags func(fs *flag.FlagSet)) (*client, []string, error) {
	fs := newFlagSet("dmctl " + name)
	g.register(fs)
	if addFlags != nil {
		addFlags(fs)
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, nil, err
	}
	g.noteSet(fs)
	if err := g.check(); err != nil {
		return nil, nil, err
	}
	switch {
	case len(pos) < minArgs:
		return nil, nil, usageError{fmt.Sprintf("%s needs %d argument(s), got %d", name, minArgs, len(pos))}
	case maxArgs >= 0 && len(pos) > maxArgs:
		return nil, nil, usageError{fmt.Sprintf("%s: unexpected argument %q", name, pos[maxArgs])}
	}
	// TLS when any --tls-* setting is given (the server's certificate is always verified);
	// plaintext otherwise.
	creds, err := g.tls.Credentials(tlsVars)
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient(g.addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsg)))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", g.addr, err)
	}
	return &client{g: g, ctx: ctx, stdout: stdout, stderr: stderr, conn: conn}, pos, nil
}

func (c *client) close() { c.conn.Close() }

// call returns the context for one unary call, bounded by --timeout.
func (c *client) call() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.ctx, c.g.timeout)
}

func (c *client) json() bool { return c.g.output == "json" }

// printJSON writes m as one protobuf JSON document.
func (c *client) printJSON(m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s as JSON: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return c.write(append(b, '\n'))
}

// printJSONLine writes m as JSON on one line (for streams).
func (c *client) printJSONLine(m proto.Message) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s as JSON: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return c.write(append(b, '\n'))
}

func (c *client) write(b []byte) error {
	if _, err := c.stdout.Write(b); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// table writes aligned columns or key/value pairs; flush with end.
type table struct {
	tw  *tabwriter.Writer
	err error
}

func (c *client) table() *table {
	return &table{tw: tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)}
}

func (t *table) row(cells ...string) {
	if t.err == nil {
		_, t.err = io.WriteString(t.tw, strings.Join(cells, "\t")+"\n")
	}
}

func (t *table) end() error {
	if t.err == nil {
		t.err = t.tw.Flush()
	}
	if t.err != nil {
		return fmt.Errorf("write output: %w", t.err)
	}
	return nil
}

// rpcErrorLine renders a gRPC status as "<code>: <message>", followed by the field
// violations of a google.rpc.BadRequest detail. ok is false for errors that are not statuses.
func rpcErrorLine(err error) (string, bool) {
	st, ok := status.FromError(err)
	if !ok || st == nil {
		return "", false
	}
	var b strings.Builder
	b.WriteString(st.Code().String() + ": " + st.Message())
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				b.WriteString("; field " + v.GetField() + ": " + v.GetDescription())
			}
		}
	}
	return b.String(), true
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

// labelsFlag is a repeatable --label key=value.
type labelsFlag map[string]string

func (l labelsFlag) String() string { return formatLabels(l) }

func (l labelsFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q is not key=value", s)
	}
	if _, dup := l[k]; dup {
		return fmt.Errorf("label %q given twice", k)
	}
	l[k] = v
	return nil
}

func formatLabels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// pageSize checks a --page-size value.
func pageSize(n int) (int32, error) {
	if n < 0 || n > math.MaxInt32 {
		return 0, usageError{"--page-size must be between 0 and " + strconv.Itoa(math.MaxInt32)}
	}
	return int32(n), nil
}

func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format("2006-01-02T15:04:05.000Z")
}

// displayValue renders a node value for text output: printable UTF-8 as is, anything else
// (control characters, newlines, invalid UTF-8) as base64 after "b64:". A printable value
// that itself starts with "b64:" is encoded too, so the output is never ambiguous.
func displayValue(b []byte) string {
	if printable(b) && !strings.HasPrefix(string(b), "b64:") {
		return string(b)
	}
	return "b64:" + base64.StdEncoding.EncodeToString(b)
}

func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// readValue returns a value argument: "@file" reads the file, "@@text" stands for the
// literal "@text", anything else is the value itself.
func readValue(arg string) ([]byte, error) {
	switch {
	case strings.HasPrefix(arg, "@@"):
		return []byte(arg[1:]), nil
	case strings.HasPrefix(arg, "@"):
		name := arg[1:]
		if name == "" {
			return nil, usageError{"@ needs a file name (@@ for a literal @)"}
		}
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("read value: %w", err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxInput+1))
		if err != nil {
			return nil, fmt.Errorf("read value from %s: %w", name, err)
		}
		if len(b) > maxInput {
			return nil, fmt.Errorf("read value from %s: larger than %d bytes", name, maxInput)
		}
		return b, nil
	}
	return []byte(arg), nil
}

// pages fetches one page, or with all every page, calling fetch with each page token (the
// first is the one the user gave); fetch appends the page's items and returns the next
// token, which pages returns at the end. A token the server hands out twice stops it.
func (c *client) pages(what, token string, all bool, fetch func(ctx context.Context, token string) (string, error)) (string, error) {
	seen := map[string]bool{}
	for {
		cctx, cancel := c.call()
		next, err := fetch(cctx, token)
		cancel()
		if err != nil {
			return "", err
		}
		if !all || next == "" {
			return next, nil
		}
		if seen[next] {
			return "", fmt.Errorf("list %s: the server returned page token %q twice", what, next)
		}
		seen[next] = true
		token = next
	}
}
