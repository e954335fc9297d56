// Command dmctl is dmgrid's command-line tool. Today it converts and checks SyncML DM
// messages offline; it grows into the client of dmgrid's gRPC APIs.
//
//	dmctl syncml decode                 WBXML or XML on stdin → pretty XML on stdout
//	dmctl syncml encode --to wbxml|xml  XML on stdin → that encoding on stdout
//	dmctl syncml validate               WBXML or XML on stdin → "ok" or the first problem
//
// On bad input dmctl prints one line to stderr and exits with status 1 (2 for usage errors).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// maxInput bounds what dmctl reads from stdin; the decoders' own limits apply after it.
const maxInput = 64 << 20

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usage = `usage: dmctl <command> [flags]

commands:
  syncml decode                 read XML or WBXML on stdin, write pretty XML
  syncml encode --to wbxml|xml  read XML on stdin, write it in the given encoding
  syncml validate               read XML or WBXML on stdin, check it against the DM rules
`

// run executes one dmctl invocation and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := dispatch(args, stdin, stdout)
	if err == nil {
		return 0
	}
	// One line, whatever the error: support engineers grep these.
	fmt.Fprintln(stderr, "dmctl: "+strings.ReplaceAll(err.Error(), "\n", " "))
	var u usageError
	if errors.As(err, &u) {
		fmt.Fprint(stderr, usage)
		return 2
	}
	return 1
}

func dispatch(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) < 1 {
		return usageError{"no command"}
	}
	switch args[0] {
	case "syncml":
		return syncmlCmd(args[1:], stdin, stdout)
	case "help", "-h", "--help":
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
