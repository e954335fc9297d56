// Command dmgrid-session runs a session worker (SessionService, DeviceService, CommandService and the events relay).
// Every setting is an environment variable (see session.ConfigFromEnv) or the flag that
// mirrors it: DMGRID_GRPC_ADDR is also --grpc-addr; --help lists them.
package main

import (
	"github.com/dmgrid/dmgrid/internal/envflag"
	"github.com/dmgrid/dmgrid/services/session"
)

func main() {
	envflag.Main("dmgrid-session", session.ConfigFromEnv, session.Run)
}
