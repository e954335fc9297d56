// Command dmgrid-notifier runs a notifier replica (NotifierService, the wake and answer consumers, the send worker).
// Every setting is an environment variable (see notifier.ConfigFromEnv) or the flag that
// mirrors it: DMGRID_GRPC_ADDR is also --grpc-addr; --help lists them.
package main

import (
	"github.com/dmgrid/dmgrid/internal/envflag"
	"github.com/dmgrid/dmgrid/services/notifier"
)

func main() {
	envflag.Main("dmgrid-notifier", notifier.ConfigFromEnv, notifier.Run)
}
