// Command dmgrid-session runs a session worker (SessionService, DeviceService,
// CommandService and the events relay). Configuration comes from the environment (see
// session.ConfigFromEnv): DMGRID_GRPC_ADDR, DMGRID_REDIS_URL, DMGRID_NATS_URL, ...
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dmgrid/dmgrid/services/session"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("service", "session")
	if err := run(ctx, log); err != nil {
		fmt.Fprintln(os.Stderr, "dmgrid-session:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	cfg, err := session.ConfigFromEnv(os.LookupEnv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	return session.Run(ctx, cfg, log)
}
