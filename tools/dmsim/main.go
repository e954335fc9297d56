// Command dmsim runs simulated OMA DM 1.2 devices (pkg/dmsim) against a DM server and prints
// one summary line per session.
//
//	dmsim run --url http://127.0.0.1:8080/dm --device-id IMEI:490154203237518 \
//	          --auth md5 --name dmclient01 --secret S [--nonce B64] \
//	          [--server-name N --server-secret S --server-nonce B64] \
//	          [--encoding xml|wbxml] [--devices N --concurrency C --seed S] \
//	          [--sessions N] [--session-id HEX] [--timeout 2m] [--insecure] [-v]
//
// Every flag has an environment variable: DMSIM_ plus the flag name in upper case with "-"
// as "_" (DMSIM_URL, DMSIM_DEVICE_ID, DMSIM_AUTH, ...); a flag on the command line wins.
// With --devices > 1 the devices come from a seeded fleet and "{devid}" in --name and
// --secret is replaced by each device's DevId. dmsim exits 1 when a session fails and 2 on
// usage errors.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "dmsim: "+err.Error())
	var u usageError
	if errors.As(err, &u) {
		fmt.Fprint(stderr, usage)
		return 2
	}
	return 1
}
