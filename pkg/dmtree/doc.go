// Package dmtree models the OMA DM 1.2.1 management tree as a server sees
// it (OMA-TS-DM_TND §8, PROTOCOL.md §10): node URIs with their ?prop= and
// ?list= queries, URI limits, node Formats and access control lists.
//
// The package is pure: it parses, validates and canonicalises values that
// travel in LocURI, Meta/Format and ACL property data. It stores nothing.
// Every parse error is a *Error whose Status method gives the SyncML status
// code a server should answer with (400, 406, 413, 414, 415).
package dmtree
