// Package apierr builds the gRPC statuses dmgrid's APIs return (AIP-193): InvalidArgument
// with a google.rpc.BadRequest naming every bad field, other codes with a
// google.rpc.ErrorInfo carrying a machine-readable reason.
package apierr

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of every dmgrid error.
const Domain = "dmgrid.io"

// Violations collects what is wrong with a request, so that one answer names every bad
// field instead of the first only.
type Violations []*errdetails.BadRequest_FieldViolation

// Add records one bad field.
func (v *Violations) Add(field, desc string) {
	*v = append(*v, &errdetails.BadRequest_FieldViolation{Field: field, Description: desc})
}

// Err returns nil when nothing was added, else InvalidArgument with a BadRequest.
func (v Violations) Err() error {
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

// Invalid is InvalidArgument for one field.
func Invalid(field, desc string) error {
	var v Violations
	v.Add(field, desc)
	return v.Err()
}

// Info is a status with an ErrorInfo.
func Info(code codes.Code, reason, msg string, meta map[string]string) error {
	st, _ := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: Domain, Metadata: meta})
	return st.Err()
}
