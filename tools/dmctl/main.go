// Command dmctl is dmgrid's command-line tool. It converts and checks SyncML DM messages
// offline, and it is a client of dmgrid's public gRPC APIs (dmgrid.device.v1 and
// dmgrid.command.v1):
//
//	dmctl syncml decode|encode|validate          SyncML tools on stdin/stdout
//	dmctl device create|get|list|delete          DeviceService
//	dmctl command enqueue|get|list|cancel|watch  CommandService
//
// "dmctl help" lists every command and flag. On bad input or an API error dmctl prints one
// line to stderr and exits with status 1 (2 for usage errors).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// maxInput bounds what dmctl reads from stdin; the decoders' own limits apply after it.
const maxInput = 64 << 20

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runContext(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usage = `usage: dmctl <command> [flags]

SyncML tools (offline):
  syncml decode                 read XML or WBXML on stdin, write pretty XML
  syncml encode --to wbxml|xml  read XML on stdin, write it in the given encoding
  syncml validate               read XML or WBXML on stdin, check it against the DM rules

Package 0 notifications (offline):
  pkg0 build --server-id ID --secret S --nonce HEX --session-id N --ui-mode 0..3
      [--initiator server|client] [--version N] [--vendor HEX] [--wsp] [--hex]
                                write the Package 0 (--wsp: the WSP push PDU) to stdout;
                                N is decimal or 0x-hex; --hex writes hex text
  pkg0 decode [--server-id ID --secret S --nonce HEX] [--input auto|pkg0|wsp|sms] [--hex]
                                read a Package 0, WSP push PDU or SMS user data on stdin
                                (--hex: as hex text), print its fields as JSON; with a
                                secret also digest_ok (and resync_nonce when only the
                                zero nonce matched)
      the secret may come from env DMCTL_PKG0_SECRET instead of --secret

Devices (dmgrid.device.v1.DeviceService):
  device create <device-id> --client-auth none|basic|md5|hmac [--client-name N] [--client-secret S]
      [--server-auth none|basic|md5|hmac --server-name N --server-secret S]
      [--server-id ID] [--msisdn +E164] [--label k=v]... [--request-id R]
                                print the created device
  device get <device-id>
  device list [--label k=v]... [--page-size N] [--page-token T] [--all]
                                --all follows page tokens to the last page
  device delete <device-id> [--etag E]

Commands (dmgrid.command.v1.CommandService):
  command enqueue <device-id> get <uri>...
  command enqueue <device-id> replace <uri> <value> [--format F] [--type T]
  command enqueue <device-id> add <uri> [<value>] [--format F] [--type T]
  command enqueue <device-id> delete <uri>...
  command enqueue <device-id> exec <uri> [<data>] [--correlator C] [--format F] [--type T]
  command enqueue <device-id> copy <source-uri> <target-uri>
      enqueue flags: [--atomic|--sequence] [--wake] [--request-id R] [--expire 1h]
      prints the new command ids, one per line; a value "@file" is read from the file,
      "@@text" stands for the literal "@text"
  command get <command-id>      state, status code and results ("uri = value"; values that
                                are not printable UTF-8 are shown as "b64:<base64>")
  command list <device-id> [--state queued|sent|completed|failed|cancelled|expired]...
      [--page-size N] [--page-token T] [--all]
  command cancel <command-id>   cancel a queued command (and the rest of its group)
  command watch <device-id> [--id ID]... [--count N]
                                stream state changes, one line each, until interrupted,
                                N events, or every --id command is in a final state

Notifications (dmgrid.notifier.v1.NotifierService; --addr defaults to env DMGRID_NOTIFIER_ADDR):
  notify <device-id> [--ui-mode 0..3|background|informative|user-interaction] [--reason R]
      [--initiator server|user] [--request-id R]
                                queue a Package 0 (or show the outstanding one)
  notification get <notification-id>
  notification list <device-id> [--page-size N] [--page-token T] [--all]

Inventory (dmgrid.inventory.v1.InventoryService; --addr defaults to env DMGRID_INVENTORY_ADDR):
  inventory get <device-id>     DevInfo, DevDetail, sessions, labels, last seen
  inventory list [filter] [--page-size N] [--page-token T] [--all]
  inventory count [filter]
  inventory tree <device-id> [<uri>]
                                last-known node values, all or the subtree at <uri>
  inventory stats [filter] [--by model|firmware|manufacturer|software|hardware|type|oem|
      language|dm-version|outcome]...   device counts per value (default: model, firmware)
      filter: [--man M] [--model M] [--fw V] [--sw V] [--hw V] [--type T] [--oem O]
      [--lang L] [--dm-version V] [--outcome completed|aborted|auth-failed|timed-out|error]
      [--label k=v]... [--seen-after T] [--seen-before T]
      (all must match; T is an RFC 3339 time or a duration ago, e.g. 24h)

API flags (anywhere after "dmctl"):
  --addr host:port  gRPC address of the session tier (env DMGRID_ADDR, default ` + defaultAddr + `)
  --tls-ca FILE     TLS: verify the server with this PEM CA bundle (env DMGRID_TLS_CA); any
                    --tls-* setting turns TLS on (without --tls-ca the system's roots verify
                    the server); without them dmctl speaks plaintext gRPC
  --tls-cert FILE, --tls-key FILE
                    client certificate and key, for servers that require one (mutual TLS;
                    env DMGRID_TLS_CERT, DMGRID_TLS_KEY)
  --tls-server-name NAME
                    the name the server's certificate holds, when it is not the --addr host
                    (env DMGRID_TLS_SERVER_NAME)
  -o text|json      output format (default text); json is protobuf JSON, one document
                    (lists: the items and next_page_token; watch: one object per line)
  --timeout D       deadline of each call (default 10s); watch has none unless given
  --                ends the flags, for a value that begins with "-"

Secrets: leave out --client-secret / --server-secret and set DMCTL_CLIENT_SECRET /
DMCTL_SERVER_SECRET instead to keep them out of shell history and process listings.
dmctl never prints a secret.

Exit status: 0 success; 1 bad input or an API error, printed as one line
"dmctl: <code>: <message>" (with "field <path>: <problem>" for each invalid field);
2 usage error.
`

// run executes one dmctl invocation and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdin, stdout, stderr)
}

// runContext is run with a context that ends on interrupt.
func runContext(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdin, stdout, stderr)
	if err == nil {
		return 0
	}
	if errors.Is(err, errHelp) {
		io.WriteString(stdout, usage)
		return 0
	}
	// One line, whatever the error: support engineers grep these.
	line, ok := rpcErrorLine(err)
	if !ok {
		line = err.Error()
	}
	fmt.Fprintln(stderr, "dmctl: "+strings.ReplaceAll(line, "\n", " "))
	var u usageError
	if errors.As(err, &u) {
		fmt.Fprint(stderr, usage)
		return 2
	}
	return 1
}

func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	g, args, leading, err := parseLeadingGlobals(args)
	if err != nil {
		return err
	}
	if len(args) < 1 {
		return usageError{"no command"}
	}
	switch args[0] {
	case "syncml":
		if leading {
			return usageError{"--addr, -o, --timeout and --tls-* apply to the API commands, not syncml"}
		}
		return syncmlCmd(args[1:], stdin, stdout)
	case "device":
		return deviceCmd(ctx, g, args[1:], stdout, stderr)
	case "command":
		return commandCmd(ctx, g, args[1:], stdout, stderr)
	case "pkg0":
		return pkg0Cmd(args[1:], stdin, stdout)
	case "notify", "notification":
		return notifyCmd(ctx, g, args, stdout, stderr)
	case "inventory":
		return inventoryCmd(ctx, g, args[1:], stdout, stderr)
	case "help":
		_, err := io.WriteString(stdout, usage)
		return err
	}
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}

func readInput(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, fmt.Errorf("read stdin: %w", err)
	}
	if len(b) > maxInput {
		return nil, fmt.Errorf("read stdin: input larger than %d bytes", maxInput)
	}
	return b, nil
}

// limits lets dmctl read anything it may be asked to inspect, up to maxInput.
var limits = syncml.Limits{MaxBodyBytes: maxInput}

func syncmlCmd(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) < 1 {
		return usageError{"syncml needs a subcommand: decode, encode or validate"}
	}
	fs := flag.NewFlagSet("dmctl syncml "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	to := fs.String("to", "", "target encoding: wbxml or xml (encode)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	in, err := readInput(stdin)
	if err != nil {
		return err
	}
	switch args[0] {
	case "decode":
		m, _, err := syncml.Decode(in, syncml.EncodingUnknown, limits)
		if err != nil {
			return err
		}
		out, err := syncml.AppendXML(nil, m, syncml.XMLOptions{Indent: "  "})
		if err != nil {
			return err
		}
		_, err = stdout.Write(out)
		return err
	case "encode":
		var out []byte
		m, err := syncml.DecodeXML(in, limits)
		if err != nil {
			return err
		}
		switch *to {
		case "wbxml":
			out, err = syncml.AppendWBXML(nil, m, syncml.WBXMLOptions{})
		case "xml":
			out, err = syncml.AppendXML(nil, m, syncml.XMLOptions{})
		default:
			return usageError{"encode needs --to wbxml or --to xml"}
		}
		if err != nil {
			return err
		}
		_, err = stdout.Write(out)
		return err
	case "validate":
		m, enc, err := syncml.Decode(in, syncml.EncodingUnknown, limits)
		if err != nil {
			return err
		}
		if err := syncml.Validate(m); err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "ok: %s message, session %s, message %s, %d commands\n",
			enc, m.Header.SessionID, m.Header.MsgID, len(m.Body.Commands))
		return err
	}
	return usageError{fmt.Sprintf("unknown syncml subcommand %q", args[0])}
}
