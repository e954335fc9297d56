// Command dmgrid-gateway runs the device-facing HTTP gateway.
// Every setting is an environment variable (see gateway.ConfigFromEnv) or the flag that
// mirrors it: DMGRID_SESSION_ADDR is also --session-addr; --help lists them.
package main

import (
	"github.com/dmgrid/dmgrid/internal/envflag"
	"github.com/dmgrid/dmgrid/services/gateway"
)

func main() {
	envflag.Main("dmgrid-gateway", gateway.ConfigFromEnv, gateway.Run)
}
