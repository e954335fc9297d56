package api

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dmgrid/dmgrid/internal/apierr"
	"github.com/dmgrid/dmgrid/services/inventory/internal/store"
)

// Errors leave the API as gRPC statuses with details (AIP-193): InvalidArgument carries a
// google.rpc.BadRequest with one violation per bad field, the others an ErrorInfo.

// violations, invalid and withInfo are the shared builders (internal/apierr).
type violations = apierr.Violations

var invalid, withInfo = apierr.Invalid, apierr.Info

// storeErr maps a store error to a status: an unknown device is NotFound, a deadline is
// DeadlineExceeded, anything else stands for an outage of Redis and is Unavailable.
func storeErr(err error, what string, meta map[string]string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return withInfo(codes.NotFound, "NOT_FOUND", what+" not found", meta)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "%s: %v", what, err)
	case errors.Is(err, context.Canceled):
		return status.Errorf(codes.Canceled, "%s: %v", what, err)
	}
	return status.Errorf(codes.Unavailable, "%s: %v", what, err)
}
