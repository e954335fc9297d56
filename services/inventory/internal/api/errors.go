package api

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dmgrid/dmgrid/services/inventory/internal/store"
)

// Errors leave the API as gRPC statuses with details (AIP-193): InvalidArgument carries a
// google.rpc.BadRequest with one violation per bad field, the others an ErrorInfo.

const errorDomain = "dmgrid.io"

// violations collects what is wrong with a request, so that one answer names every bad
// field instead of the first only.
type violations []*errdetails.BadRequest_FieldViolation

func (v *violations) add(field, desc string) {
	*v = append(*v, &errdetails.BadRequest_FieldViolation{Field: field, Description: desc})
}

// err returns nil when nothing was added, else InvalidArgument with a BadRequest.
func (v violations) err() error {
	if len(v) == 0 {
		return nil
	}
	msg := "invalid " + v[0].Field + ": " + v[0].Description
	if len(v) > 1 {
		msg += " (and more, see details)"
	}
	st, _ := status.New(codes.InvalidArgument, msg).WithDetails(&errdetails.BadRequest{FieldViolations: v})
	return st.Err()
}

func invalid(field, desc string) error {
	var v violations
	v.add(field, desc)
	return v.err()
}

func withInfo(code codes.Code, reason, msg string, meta map[string]string) error {
	st, _ := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain, Metadata: meta})
	return st.Err()
}

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
