// Command dmgrid-inventory runs an inventory replica: the durable consumer of the events
// stream and InventoryService. Configuration comes from the environment (see
// inventory.ConfigFromEnv): DMGRID_GRPC_ADDR, DMGRID_REDIS_URL, DMGRID_NATS_URL, ...
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dmgrid/dmgrid/services/inventory"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("service", "inventory")
	if err := run(ctx, log); err != nil {
		fmt.Fprintln(os.Stderr, "dmgrid-inventory:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	cfg, err := inventory.ConfigFromEnv(os.LookupEnv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	return inventory.Run(ctx, cfg, log)
}
