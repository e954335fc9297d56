// Package proto holds dmgrid's protobuf APIs (internal gateway↔session contract and the
// public product APIs) and their generated Go code. It is its own module so that product
// teams can import the API clients without the servers' dependencies.
package proto
