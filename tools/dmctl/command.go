package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
)

func commandCmd(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	if len(args) < 1 {
		return usageError{"command needs a subcommand: enqueue, get, list, cancel or watch"}
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "enqueue":
		return commandEnqueue(ctx, g, args, stdout, stderr)
	case "get":
		return commandGet(ctx, g, args, stdout, stderr)
	case "list":
		return commandList(ctx, g, args, stdout, stderr)
	case "cancel":
		return commandCancel(ctx, g, args, stdout, stderr)
	case "watch":
		return commandWatch(ctx, g, args, stdout, stderr)
	}
	return usageError{fmt.Sprintf("unknown command subcommand %q", sub)}
}

var opTypes = map[string]commandv1.OperationType{
	"get":     commandv1.OperationType_OPERATION_TYPE_GET,
	"replace": commandv1.OperationType_OPERATION_TYPE_REPLACE,
	"add":     commandv1.OperationType_OPERATION_TYPE_ADD,
	"delete":  commandv1.OperationType_OPERATION_TYPE_DELETE,
	"exec":    commandv1.OperationType_OPERATION_TYPE_EXEC,
	"copy":    commandv1.OperationType_OPERATION_TYPE_COPY,
}

func opName(t commandv1.OperationType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "OPERATION_TYPE_"))
}

var stateNames = map[string]commandv1.Command_State{
	"queued":    commandv1.Command_STATE_QUEUED,
	"sent":      commandv1.Command_STATE_SENT,
	"completed": commandv1.Command_STATE_COMPLETED,
	"failed":    commandv1.Command_STATE_FAILED,
	"cancelled": commandv1.Command_STATE_CANCELLED,
	"expired":   commandv1.Command_STATE_EXPIRED,
}

func stateName(s commandv1.Command_State) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STATE_"))
}

func finalState(s commandv1.Command_State) bool {
	return s != commandv1.Command_STATE_QUEUED && s != commandv1.Command_STATE_SENT &&
		s != commandv1.Command_STATE_UNSPECIFIED
}

// enqueueFlags are the flags of "command enqueue".
type enqueueFlags struct {
	format, mimeType, correlator string
	atomic, sequence, wake       bool
	requestID                    string
	expire                       time.Duration
}

func (f *enqueueFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.format, "format", "", "Meta Format of the value (chr, int, b64, bin, node, ...)")
	fs.StringVar(&f.mimeType, "type", "", "Meta Type (MIME type) of the value")
	fs.StringVar(&f.correlator, "correlator", "", "exec: correlator of the asynchronous result")
	fs.BoolVar(&f.atomic, "atomic", false, "send the operations as one Atomic")
	fs.BoolVar(&f.sequence, "sequence", false, "send the operations as one Sequence")
	fs.BoolVar(&f.wake, "wake", false, "ask for the device to be woken (Package 0)")
	fs.StringVar(&f.requestID, "request-id", "", "idempotency key")
	fs.DurationVar(&f.expire, "expire", 0, "commands not sent within this time expire")
}

// operations builds the operations of "command enqueue <device> <op> <args>...".
func (f *enqueueFlags) operations(op string, args []string) ([]*commandv1.Operation, error) {
	t, ok := opTypes[op]
	if !ok {
		return nil, usageError{fmt.Sprintf("unknown operation %q: want get, replace, add, delete, exec or copy", op)}
	}
	need := func(min, max int, form string) error {
		if len(args) < min || len(args) > max {
			return usageError{"usage: command enqueue <device-id> " + op + " " + form}
		}
		return nil
	}
	if (f.format != "" || f.mimeType != "") && (op == "get" || op == "delete" || op == "copy") {
		return nil, usageError{"--format and --type apply to replace, add and exec"}
	}
	if f.correlator != "" && op != "exec" {
		return nil, usageError{"--correlator applies to exec"}
	}
	withData := func(uri string, value []string) (*commandv1.Operation, error) {
		o := &commandv1.Operation{Type: t, TargetUri: uri, Format: f.format, MimeType: f.mimeType, Correlator: f.correlator}
		if len(value) > 0 {
			data, err := readValue(value[0])
			if err != nil {
				return nil, err
			}
			if data == nil {
				data = []byte{} // set and empty: an empty value, not "no data"
			}
			o.Data = data
		}
		return o, nil
	}
	switch op {
	case "get", "delete":
		if err := need(1, len(args), "<uri>..."); err != nil {
			return nil, err
		}
		ops := make([]*commandv1.Operation, len(args))
		for i, uri := range args {
			ops[i] = &commandv1.Operation{Type: t, TargetUri: uri}
		}
		return ops, nil
	case "replace":
		if err := need(2, 2, "<uri> <value>"); err != nil {
			return nil, err
		}
	case "add":
		if err := need(1, 2, "<uri> [<value>]"); err != nil {
			return nil, err
		}
	case "exec":
		if err := need(1, 2, "<uri> [<data>]"); err != nil {
			return nil, err
		}
	case "copy":
		if err := need(2, 2, "<source-uri> <target-uri>"); err != nil {
			return nil, err
		}
		return []*commandv1.Operation{{Type: t, SourceUri: args[0], TargetUri: args[1]}}, nil
	}
	o, err := withData(args[0], args[1:])
	if err != nil {
		return nil, err
	}
	return []*commandv1.Operation{o}, nil
}

func commandEnqueue(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	var f enqueueFlags
	c, pos, err := apiCommand(ctx, g, "command enqueue", args, stdout, stderr, 2, -1, f.register)
	if err != nil {
		return err
	}
	defer c.close()
	ops, err := f.operations(pos[1], pos[2:])
	if err != nil {
		return err
	}
	req := &commandv1.EnqueueCommandsRequest{DeviceId: pos[0], Operations: ops, RequestId: f.requestID, Wake: f.wake}
	switch {
	case f.atomic && f.sequence:
		return usageError{"--atomic and --sequence exclude each other"}
	case f.atomic:
		req.Group = commandv1.Group_GROUP_ATOMIC
	case f.sequence:
		req.Group = commandv1.Group_GROUP_SEQUENCE
	}
	if f.expire < 0 {
		return usageError{"--expire must be positive"}
	}
	if f.expire > 0 {
		req.ExpireTime = timestamppb.New(time.Now().Add(f.expire))
	}
	cctx, cancel := c.call()
	defer cancel()
	resp, err := commandv1.NewCommandServiceClient(c.conn).EnqueueCommands(cctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	var b strings.Builder
	for _, cmd := range resp.GetCommands() {
		b.WriteString(cmd.GetCommandId() + "\n")
	}
	return c.write([]byte(b.String()))
}

func commandGet(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	c, pos, err := apiCommand(ctx, g, "command get", args, stdout, stderr, 1, 1, nil)
	if err != nil {
		return err
	}
	defer c.close()
	cctx, cancel := c.call()
	defer cancel()
	resp, err := commandv1.NewCommandServiceClient(c.conn).GetCommand(cctx, &commandv1.GetCommandRequest{CommandId: pos[0]})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp.GetCommand())
	}
	return c.printCommand(resp.GetCommand())
}

// opSummary is "get ./DevDetail/FwV" or "copy ./A -> ./B".
func opSummary(o *commandv1.Operation) string {
	if o.GetType() == commandv1.OperationType_OPERATION_TYPE_COPY {
		return "copy " + o.GetSourceUri() + " -> " + o.GetTargetUri()
	}
	return opName(o.GetType()) + " " + o.GetTargetUri()
}

func (c *client) printCommand(cmd *commandv1.Command) error {
	t := c.table()
	o := cmd.GetOperation()
	t.row("command_id:", cmd.GetCommandId())
	t.row("device_id:", cmd.GetDeviceId())
	t.row("operation:", opSummary(o))
	if o.Data != nil {
		t.row("data:", displayValue(o.Data))
	}
	if o.GetFormat() != "" {
		t.row("format:", o.GetFormat())
	}
	if o.GetMimeType() != "" {
		t.row("type:", o.GetMimeType())
	}
	if o.GetCorrelator() != "" {
		t.row("correlator:", o.GetCorrelator())
	}
	if gr := cmd.GetGroup(); gr == commandv1.Group_GROUP_ATOMIC || gr == commandv1.Group_GROUP_SEQUENCE {
		t.row("group:", strings.ToLower(strings.TrimPrefix(gr.String(), "GROUP_"))+" "+cmd.GetGroupId())
	}
	t.row("state:", stateName(cmd.GetState()))
	t.row("status_code:", strconv.Itoa(int(cmd.GetStatusCode())))
	if cmd.GetError() != "" {
		t.row("error:", cmd.GetError())
	}
	t.row("attempts:", strconv.Itoa(int(cmd.GetAttempts())))
	if cmd.GetSentSessionId() != "" {
		t.row("sent_session_id:", cmd.GetSentSessionId())
	}
	t.row("create_time:", formatTime(cmd.GetCreateTime()))
	t.row("update_time:", formatTime(cmd.GetUpdateTime()))
	if cmd.GetExpireTime() != nil {
		t.row("expire_time:", formatTime(cmd.GetExpireTime()))
	}
	if err := t.end(); err != nil {
		return err
	}
	if len(cmd.GetResults()) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("results:\n")
	for _, r := range cmd.GetResults() {
		if r.Data == nil {
			b.WriteString("  " + r.GetUri() + " (no data)\n")
			continue
		}
		b.WriteString("  " + r.GetUri() + " = " + displayValue(r.Data) + "\n")
	}
	return c.write([]byte(b.String()))
}

func commandList(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	var states stringList
	var size int
	var token string
	var all bool
	c, pos, err := apiCommand(ctx, g, "command list", args, stdout, stderr, 1, 1, func(fs *flag.FlagSet) {
		fs.Var(&states, "state", "only commands in this state (repeatable)")
		fs.IntVar(&size, "page-size", 0, "commands per page")
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
	req := &commandv1.ListCommandsRequest{DeviceId: pos[0], PageSize: n, PageToken: token}
	for _, s := range states {
		st, ok := stateNames[s]
		if !ok {
			return usageError{fmt.Sprintf("--state must be queued, sent, completed, failed, cancelled or expired, not %q", s)}
		}
		req.States = append(req.States, st)
	}
	api := commandv1.NewCommandServiceClient(c.conn)
	out := &commandv1.ListCommandsResponse{}
	out.NextPageToken, err = c.pages("commands", req.PageToken, all, func(ctx context.Context, token string) (string, error) {
		req.PageToken = token
		resp, err := api.ListCommands(ctx, req)
		if err != nil {
			return "", err
		}
		out.Commands = append(out.Commands, resp.GetCommands()...)
		return resp.GetNextPageToken(), nil
	})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(out)
	}
	t := c.table()
	t.row("COMMAND_ID", "STATE", "STATUS", "OPERATION", "UPDATED")
	for _, cmd := range out.Commands {
		t.row(cmd.GetCommandId(), stateName(cmd.GetState()), statusText(cmd.GetStatusCode()), opSummary(cmd.GetOperation()), formatTime(cmd.GetUpdateTime()))
	}
	if err := t.end(); err != nil {
		return err
	}
	if out.NextPageToken != "" {
		// A page may be short or even empty when --state filters it: the token still counts.
		fmt.Fprintf(c.stderr, "dmctl: more commands: --page-token %s (or --all)\n", out.NextPageToken)
	}
	return nil
}

func statusText(code int32) string {
	if code == 0 {
		return "-"
	}
	return strconv.Itoa(int(code))
}

func commandCancel(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	c, pos, err := apiCommand(ctx, g, "command cancel", args, stdout, stderr, 1, 1, nil)
	if err != nil {
		return err
	}
	defer c.close()
	cctx, cancel := c.call()
	defer cancel()
	resp, err := commandv1.NewCommandServiceClient(c.conn).CancelCommand(cctx, &commandv1.CancelCommandRequest{CommandId: pos[0]})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	var b strings.Builder
	for _, cmd := range resp.GetCommands() {
		b.WriteString(stateName(cmd.GetState()) + " " + cmd.GetCommandId() + "\n")
	}
	return c.write([]byte(b.String()))
}

// commandWatch streams state changes until interrupted, --count events, the end of the
// stream, or (with --id) every named command in a final state.
func commandWatch(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	var ids stringList
	var count int
	c, pos, err := apiCommand(ctx, g, "command watch", args, stdout, stderr, 1, 1, func(fs *flag.FlagSet) {
		fs.Var(&ids, "id", "only this command (repeatable)")
		fs.IntVar(&count, "count", 0, "stop after this many events (0: no limit)")
	})
	if err != nil {
		return err
	}
	defer c.close()
	if count < 0 {
		return usageError{"--count must not be negative"}
	}
	// A watch runs until stopped; --timeout bounds it only when given.
	sctx, cancel := context.WithCancel(ctx)
	if c.g.timeoutSet {
		sctx, cancel = context.WithTimeout(ctx, c.g.timeout)
	}
	defer cancel()
	stream, err := commandv1.NewCommandServiceClient(c.conn).WatchCommands(sctx, &commandv1.WatchCommandsRequest{DeviceId: pos[0], CommandIds: ids})
	if err != nil {
		return watchErr(ctx, err)
	}
	pending := map[string]bool{}
	for _, id := range ids {
		pending[id] = true
	}
	for n := 0; count == 0 || n < count; n++ {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return watchErr(ctx, err)
		}
		if c.json() {
			err = c.printJSONLine(ev)
		} else {
			err = c.write([]byte(watchLine(ev) + "\n"))
		}
		if err != nil {
			return err
		}
		if cmd := ev.GetCommand(); len(ids) > 0 && finalState(cmd.GetState()) {
			delete(pending, cmd.GetCommandId())
			if len(pending) == 0 {
				return nil
			}
		}
	}
	return nil
}

// watchErr treats the end of a watch by interrupt as success.
func watchErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// watchLine is one event in text form: time, command, state, status, operation, error.
func watchLine(ev *commandv1.WatchCommandsResponse) string {
	cmd := ev.GetCommand()
	parts := []string{formatTime(ev.GetTime()), cmd.GetCommandId(), stateName(cmd.GetState()),
		statusText(cmd.GetStatusCode()), opSummary(cmd.GetOperation())}
	if cmd.GetError() != "" {
		parts = append(parts, "error="+strconv.Quote(cmd.GetError()))
	}
	return strings.Join(parts, " ")
}
