// Command dmgrid-inventory runs an inventory replica (InventoryService and the event consumer).
// Every setting is an environment variable (see inventory.ConfigFromEnv) or the flag that
// mirrors it: DMGRID_GRPC_ADDR is also --grpc-addr; --help lists them.
package main

import (
	"github.com/dmgrid/dmgrid/internal/envflag"
	"github.com/dmgrid/dmgrid/services/inventory"
)

func main() {
	envflag.Main("dmgrid-inventory", inventory.ConfigFromEnv, inventory.Run)
}
