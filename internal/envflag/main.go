package envflag

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/dmgrid/dmgrid/internal/gctune"
)

// Main is the whole main function of a service: a context ended by SIGINT/SIGTERM, JSON
// logs, configuration from flags and environment through the service's ConfigFromEnv
// (validated there), and the service's Run. A configuration error stops it with one line
// naming the variables at fault and exit status 2; --help lists the settings.
func Main[C any](name string, config func(func(string) (string, bool)) (C, error), run func(context.Context, C, *slog.Logger) error) {
	tune = gctune.Apply
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := realMain(ctx, name, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr, config, run)
	stop()
	os.Exit(code)
}

// tune sets the garbage collector (gctune.Apply in Main; nil in tests, which share the
// test binary's runtime).
var tune func() gctune.Settings

func realMain[C any](ctx context.Context, name string, args []string, env func(string) (string, bool), stdout, stderr io.Writer,
	config func(func(string) (string, bool)) (C, error), run func(context.Context, C, *slog.Logger) error) int {
	fl, err := Parse(args, env)
	if err != nil && !errors.Is(err, ErrHelp) {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	cfg, cerr := config(fl.Lookup)
	if errors.Is(err, ErrHelp) {
		fmt.Fprint(stdout, fl.Usage(name))
		return 0
	}
	if err := fl.Unused(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	if cerr != nil {
		fmt.Fprintf(stderr, "%s: configuration: %s\n", name, strings.ReplaceAll(cerr.Error(), "\n", "; "))
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil)).With("service", strings.TrimPrefix(name, "dmgrid-"))
	if tune != nil {
		s := tune()
		log.Info("garbage collector", "gogc", s.GCPercent, "gogc_from", s.GCFrom, "memory_limit_bytes", s.MemoryLimit, "memory_limit_from", s.LimitFrom)
	}
	if err := run(ctx, cfg, log); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
