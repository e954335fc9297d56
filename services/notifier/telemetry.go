package notifier

import "github.com/dmgrid/dmgrid/internal/telemetry"

// Telemetry returns the service's providers (its /metrics handler, for tests and embedding).
func (s *Service) Telemetry() *telemetry.Telemetry { return s.tel }
