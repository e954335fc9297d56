// Command dmgrid-gateway runs the device-facing HTTP gateway. Configuration comes from the
// environment (see gateway.ConfigFromEnv): DMGRID_HTTP_ADDR, DMGRID_SESSION_ADDR, ...
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dmgrid/dmgrid/services/gateway"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("service", "gateway")
	if err := run(ctx, log); err != nil {
		fmt.Fprintln(os.Stderr, "dmgrid-gateway:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	cfg, err := gateway.ConfigFromEnv(os.LookupEnv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	return gateway.Run(ctx, cfg, log)
}
