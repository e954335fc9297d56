package api

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dmgrid/dmgrid/internal/apierr"
	"github.com/dmgrid/dmgrid/services/session/internal/store"
)

// Errors leave the API as gRPC statuses with details (AIP-193): InvalidArgument carries a
// BadRequest naming the field, the others an ErrorInfo with a reason.

// invalid and withInfo are the shared builders (internal/apierr).
var invalid, withInfo = apierr.Invalid, apierr.Info

// storeErr maps store errors to statuses; what stands for an outage becomes Unavailable.
func storeErr(err error, what string, meta map[string]string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return withInfo(codes.NotFound, "NOT_FOUND", what+" not found", meta)
	case errors.Is(err, store.ErrExists):
		return withInfo(codes.AlreadyExists, "ALREADY_EXISTS", what+" already exists", meta)
	case errors.Is(err, store.ErrConflict):
		return withInfo(codes.Aborted, "CONCURRENT_MODIFICATION", what+" changed concurrently (etag mismatch); read it again", meta)
	case errors.Is(err, store.ErrNotQueued):
		return withInfo(codes.FailedPrecondition, "NOT_QUEUED", what+" is no longer queued", meta)
	case errors.Is(err, store.ErrNoSealingKey):
		return withInfo(codes.FailedPrecondition, "NO_SEALING_KEY", what+": "+store.ErrNoSealingKey.Error(), meta)
	}
	return status.Errorf(codes.Unavailable, "%s: %v", what, err)
}
