// Package dmsim simulates OMA DM 1.2.1 (SyncML DM) clients: virtual devices that hold
// complete sessions against a DM server over HTTP. It drives dmgrid's integration and load
// tests and lets carriers exercise a server without phones.
//
// A Device has a configuration, an in-memory management tree (DevInfo, DevDetail,
// DMAcc/<x>, FUMO/FwPkg1; OMA-TS-DM_StdObj §7.1.3, FUMO §10.1) and the state that survives
// between sessions: nonces (kept in the DMAcc AppAuth AAuthData nodes) and pending Generic
// Alerts. Device.RunSession plays the client side of PROTOCOL.md §3 the way a correct DM 1.2
// client does:
//
//   - Pkg1: Alert 1201 (or 1200 answering a Package 0), Replace of ./DevInfo, queued Generic
//     Alerts 1226 (§3, §6).
//   - Authentication both ways (§7): basic, md5 and syncml:auth-MAC (x-syncml-hmac over the
//     exact body) for the device; 401/407 + Chal restart Pkg1 with the challenged type and
//     nonce; 212 vs 200 decide whether Cred goes in later messages and which message or
//     session a NextNonce is for. With server credentials configured the device checks the
//     server's Cred and answers 212/401/407 with its own Chal.
//   - Every command answered per OMA-TS-DM_RepPro §4.1.6 (Get with ?prop= and ?list=Struct,
//     Add, Replace, Delete, Copy, Exec, Atomic with roll back, Sequence, Alerts) with ACLs
//     checked (425), FUMO Exec answered 202 and reported by Generic Alert in the next session.
//   - Multiple messages per package (§3.1, Alert 1222) and large objects both ways (§3.2,
//     MoreData, 213, Meta Size, 424), never exceeding the server's MaxMsgSize/MaxObjSize.
//   - RespURI honoured for every next message; retransmission of the same bytes after
//     transport errors; injected faults (lost reply, duplicate, abort, wrong password).
//
// The package uses pkg/syncml for messages, pkg/dmauth for credentials and pkg/dmtree for
// URIs, formats and ACLs. Fleet builds many devices deterministically for load tests.
package dmsim
