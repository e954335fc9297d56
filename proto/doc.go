// Package proto holds dmgrid's protobuf APIs (internal gateway↔session contract and the
// public product APIs) and their generated Go code. It is its own module so that product
// teams can import the API clients without the servers' dependencies.
//
// Sources live in dmgrid/<area>/v1/<area>.proto (package dmgrid.<area>.v1) with the
// generated Go beside them (Go package <area>v1):
//
//   - syncml: the typed SyncML DM message, a mirror of pkg/syncml's model;
//   - session: SessionService, the internal gateway↔session contract;
//   - device: DeviceService, public;
//   - command: CommandService, public;
//   - events: the events published to NATS JetStream.
//
// `make generate` regenerates the Go code, `make proto-lint` runs buf lint, and
// `make verify-generated` fails when the committed code is stale.
package proto
