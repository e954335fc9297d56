// Command notifier runs a notifier replica (NotifierService, the wake and answer consumers,
// the send worker). Configuration comes from the environment (see notifier.ConfigFromEnv):
// DMGRID_GRPC_ADDR, DMGRID_REDIS_URL, DMGRID_NATS_URL, DMGRID_SESSION_ADDR,
// DMGRID_NOTIFIER_ROUTES, DMGRID_SMPP_ADDR, ...
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dmgrid/dmgrid/services/notifier"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("service", "notifier")
	if err := run(ctx, log); err != nil {
		fmt.Fprintln(os.Stderr, "notifier:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	cfg, err := notifier.ConfigFromEnv(os.LookupEnv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	return notifier.Run(ctx, cfg, log)
}
